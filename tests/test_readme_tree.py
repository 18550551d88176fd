"""README.md's file tree names every file of the project, and only files that exist.

The tree is the ``` block of the ``## Files`` section, one entry per line: a path, then two or
more spaces and what the file is for. A path that ends in ``/`` is a folder; the lines indented
below a folder line are relative to that folder. A line may name several files of one folder,
comma-separated, the names after the first in the first one's folder (``train/sft.py, dpo.py``).
Every file that git tracks or would track (not ignored) under ``src/collabrl/``, ``configs/``
and ``benchmarks/``, and the top-level project files, must be named as a file (a folder line
does not count for the files in it); ``__init__.py`` files are left out.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LISTED = (
    "src/collabrl",
    "configs",
    "benchmarks",
    "Makefile",
    "pyproject.toml",
    "requirements/lock.txt",
    ".ci/run",
)


def _tree_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Files\n.*?^```\n(.*?)^```", readme, flags=re.S | re.M)
    assert match, "README.md needs a ``` block under its ## Files heading"
    return [line for line in match.group(1).splitlines() if line.strip()]


def _columns(line: str) -> tuple[int, list[str], str]:
    """(indentation, the names of its path column, its description)."""
    path_column, _, description = line.strip().partition("  ")
    names = [name.strip() for name in path_column.split(",")]
    return len(line) - len(line.lstrip()), names, description.strip()


def tree_paths() -> list[str]:
    """Every path the tree names, from the repository root; folders end in '/'."""
    paths: list[str] = []
    folders: list[tuple[int, str]] = []  # the folder lines enclosing the current line
    for line in _tree_lines():
        indent, (first, *siblings), _ = _columns(line)
        while folders and folders[-1][0] >= indent:
            folders.pop()
        base = folders[-1][1] if folders else ""
        head = first[: first.rstrip("/").rfind("/") + 1]
        paths += [base + first, *(base + head + name for name in siblings)]
        if first.endswith("/"):
            folders.append((indent, base + first))
    return paths


def _project_files() -> set[str]:
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *LISTED],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout to tell the project's files from build outputs")
    return {
        path
        for path in listing.splitlines()
        if (ROOT / path).is_file()
        and Path(path).name != "__init__.py"
        and "__pycache__" not in path
    }


def test_every_project_file_is_in_the_tree():
    missing = sorted(_project_files() - set(tree_paths()))
    assert not missing, (
        "README.md's file tree (## Files) lacks these files; add a line for each, saying what it "
        "is for:\n  " + "\n  ".join(missing)
    )


def test_every_path_in_the_tree_exists():
    extra = [
        path
        for path in tree_paths()
        if not ((ROOT / path).is_dir() if path.endswith("/") else (ROOT / path).is_file())
    ]
    assert not extra, (
        "README.md's file tree (## Files) names paths that do not exist (renamed or deleted?):\n  "
        + "\n  ".join(extra)
    )


def test_every_file_in_the_tree_is_described():
    bare = [
        line.strip()
        for line in _tree_lines()
        if not _columns(line)[1][0].endswith("/") and not _columns(line)[2]
    ]
    assert not bare, "README.md's file tree: say what these are for:\n  " + "\n  ".join(bare)
