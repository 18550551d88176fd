"""Bad input a user really types ends every command the same way: exactly one line,
``error: ...``, naming the key or the file, exit status 2, no traceback, and nothing written:
commands check their paths before they start any work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from collabrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
C = ["--config", "configs/scripted.yaml"]
ASK = ["--conversation", "examples/reward_request.json"]

CASES = {
    # issue 12, finding 6
    "override-broken-yaml": (["generate", *C, "generate.candidates=[1,"], ["generate.candidates"]),
    "output-dir-is-a-file": (
        ["generate", *C, "generate.output_dir=afile"],
        ["generate.output_dir", "afile"],
    ),
    "output-dir-under-a-file": (
        ["generate", *C, "generate.output_dir=afile/run"],
        ["generate.output_dir", "afile"],
    ),
    "cache-is-a-folder": (["simulate", *C, "cache.path=configs"], ["cache.path", "configs"]),
    "cache-under-a-file": (
        ["generate", *C, "cache.path=afile/cache.sqlite"],
        ["cache.path", "afile"],
    ),
    "cache-not-a-database": (["simulate", *C, "cache.path=notdb.sqlite"], ["notdb.sqlite"]),
    "tasks-file-is-a-folder": (
        ["simulate", *C, "simulate.tasks.path=configs"],
        ["configs", "folder"],
    ),
    "tasks-file-not-utf8": (["eval", *C, "eval.tasks.path=binary.jsonl"], ["binary.jsonl"]),
    # config files and overrides
    "config-missing": (["generate", "--config", "missing.yaml"], ["missing.yaml"]),
    "config-is-a-folder": (["models", "check", "--config", "configs"], ["configs"]),
    "config-invalid-yaml": (["simulate", "--config", "bad.yaml"], ["bad.yaml", "line 3"]),
    "config-not-utf8": (["eval", "--config", "binary.yaml"], ["binary.yaml"]),
    "override-unknown-key": (["generate", *C, "generate.candidatez=3"], ["generate.candidatez"]),
    "override-without-equals": (["export", *C, "export.min_gap"], ["export.min_gap"]),
    "override-into-a-value": (["eval", *C, "eval.seeds.x=1"], ["eval.seeds"]),
    "two-invalid-values": (
        ["generate", *C, "generate.candidates=0", "generate.max_turns=0"],
        ["generate.candidates", "generate.max_turns"],
    ),
    # cache off: an unknown role is found only once the cache file has been opened
    "value-that-looks-like-an-emoji-code": (
        ["eval", *C, "eval.systems=[{name:a}]"],
        ["eval.systems.0.name:a"],
    ),
    "no-task-sources": (["simulate", *C, "simulate.tasks=[]"], ["simulate.tasks"]),
    "unknown-role": (["simulate", *C, "cache.enabled=false", "assistant.role=critic"], ["critic"]),
    # other output locations
    "simulate-output-is-a-folder": (
        ["simulate", *C, "simulate.output=configs"],
        ["simulate.output"],
    ),
    "simulate-output-under-a-file": (
        ["simulate", *C, "simulate.output=afile/c.jsonl"],
        ["simulate.output"],
    ),
    "eval-output-is-a-file": (["eval", *C, "eval.output_dir=afile"], ["eval.output_dir"]),
    "export-output-is-a-file": (
        ["export", *C, "export.input_dir=examples", "export.output_dir=afile"],
        ["export.output_dir"],
    ),
    "reward-output-is-a-folder": (
        ["reward", *C, *ASK, "--output", "configs"],
        ["--output", "configs"],
    ),
    "report-output-under-a-file": (
        ["report", "examples", "--output", "afile/r.html"],
        ["--output"],
    ),
    "tasks-export-output-under-a-file": (
        ["tasks", "export", "doc-chat", "--output", "afile/t.jsonl"],
        ["--output"],
    ),
    "train-output-is-a-file": (
        ["train", "dpo", *C, "train.output_dir=afile"],
        ["train.output_dir"],
    ),
    "demo-report-is-a-folder": (
        ["demo", "--config", "configs/demo.yaml", "demo.report=configs"],
        ["demo.report"],
    ),
    "demo-cache-under-a-file": (
        ["demo", "--config", "configs/demo.yaml", "cache.path=afile/c"],
        ["cache.path"],
    ),
    "reference-write-to-a-folder": (["config", "reference", "--write", "configs"], ["configs"]),
    "study-links-under-a-file": (
        ["study", "invite", "--config", "configs/study.yaml", "--out", "afile/links.txt"],
        ["--out"],
    ),
    "study-analysis-is-a-file": (["study", "analyze", "study.sqlite", "--out", "afile"], ["--out"]),
    "merge-output-is-a-file": (
        ["merge", "--adapter", "configs", "--output", "afile"],
        ["--output"],
    ),
    # input locations
    "export-input-missing": (["export", *C, "export.input_dir=nope"], ["export.input_dir", "nope"]),
    "export-input-is-a-file": (["export", *C, "export.input_dir=afile"], ["export.input_dir"]),
    "report-input-missing": (["report", "nope"], ["nope"]),
    "reward-request-missing": (["reward", *C, "--conversation", "nope.json"], ["nope.json"]),
    "reward-request-is-a-folder": (["reward", *C, "--conversation", "configs"], ["configs"]),
    "tasks-show-path-missing": (["tasks", "show", "math-hard", "--path", "nope"], ["nope"]),
    "tasks-show-unknown-set": (["tasks", "show", "no-such-set"], ["no-such-set"]),
    "study-database-missing": (
        ["study", "analyze", "nope.sqlite", "--out", "analysis"],
        ["nope.sqlite"],
    ),
    "study-database-not-a-database": (
        ["study", "analyze", "afile", "--out", "analysis"],
        ["afile"],
    ),
}

ARGPARSE_CASES = {
    "unknown-log-level": (["--log-level", "LOUD", "tasks", "list"], "--log-level"),
    "zero-candidates": (["reward", *C, *ASK, "--candidates", "0"], "--candidates"),
    "negative-limit": (["tasks", "show", "doc-chat", "--limit", "-1"], "--limit"),
    "misspelt-option": (["generate", "--confg", "x.yaml"], "--confg"),
}

# Run as a user without privileges: root may write into read-only folders and read any file.
LOCKED_CASES = {
    "output-dir-in-read-only-folder": (
        ["generate", *C, "generate.output_dir=locked/run"],
        ["generate.output_dir", "locked"],
    ),
    "output-dir-read-only": (["eval", *C, "eval.output_dir=locked"], ["eval.output_dir", "locked"]),
    "cache-in-read-only-folder": (
        ["simulate", *C, "cache.path=locked/cache.sqlite"],
        ["cache.path"],
    ),
    "report-in-read-only-folder": (
        ["report", "examples", "--output", "locked/r.html"],
        ["--output"],
    ),
    "tasks-file-unreadable": (
        ["simulate", *C, "simulate.tasks.path=secret.jsonl"],
        ["secret.jsonl"],
    ),
    "config-unreadable": (["generate", "--config", "secret.yaml"], ["secret.yaml"]),
}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def assert_one_error_line(output: str, names: list[str]) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output
    assert lines and lines[-1].startswith("error: "), output
    assert sum("error" in line for line in lines) == 1, output
    for name in names:
        assert name in lines[-1], output


def add_bad_files(folder: Path) -> None:
    (folder / "afile").write_text("a file where a folder is expected\n")
    (folder / "notdb.sqlite").write_text("not a database\n")
    (folder / "bad.yaml").write_text("roles:\n  user: [unclosed\n  x: 1\n")
    (folder / "binary.yaml").write_bytes(b"\xff\xfe\x00roles")
    (folder / "binary.jsonl").write_bytes(b"\xff\xfe\x00\n")


@pytest.mark.parametrize(("argv", "names"), CASES.values(), ids=CASES.keys())
def test_bad_input_ends_with_one_error_line_and_writes_nothing(workdir, capsys, argv, names):
    add_bad_files(workdir)
    before = snapshot(workdir)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert_one_error_line(captured.out + captured.err, names)
    assert snapshot(workdir) == before


@pytest.mark.parametrize(("argv", "name"), ARGPARSE_CASES.values(), ids=ARGPARSE_CASES.keys())
def test_bad_arguments_are_refused_by_the_parser(workdir, capsys, argv, name):
    before = snapshot(workdir)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: " in last and name in last
    assert snapshot(workdir) == before


def as_nobody(folder: Path, argv: list[str]) -> tuple[int, str]:
    """Run collabrl in ``folder`` as ``nobody`` (from root): exit status and output."""
    command = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        sys.executable,
        "-m",
        "collabrl",
        *argv,
    ]
    done = subprocess.run(
        command,
        cwd=folder,
        env={**os.environ, "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def locked_project(tmp_path, monkeypatch, capsys):
    """A project with a read-only folder ``locked/`` and unreadable ``secret.*`` files, and a
    function running a command there as someone they apply to. Root ignores permissions, so as
    root the command runs as ``nobody`` in a folder it owns (it cannot enter ``tmp_path``);
    otherwise in this process."""
    root = os.geteuid() == 0
    if root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop privileges")
    folder = Path(tempfile.mkdtemp(prefix="collabrl-locked-")) if root else tmp_path
    for name in ("configs", "examples"):
        shutil.copytree(ROOT / name, folder / name)
    shutil.copy(folder / "examples/tasks.jsonl", folder / "secret.jsonl")
    shutil.copy(folder / "configs/scripted.yaml", folder / "secret.yaml")
    (folder / "locked").mkdir()
    if root:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, 65534, 65534)
    for path, mode in (
        (folder / "locked", 0o555),
        (folder / "secret.jsonl", 0),
        (folder / "secret.yaml", 0),
    ):
        path.chmod(mode)

    def in_process(argv: list[str]) -> tuple[int, str]:
        code = main(argv)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    if not root:
        monkeypatch.chdir(folder)
    yield folder, (lambda argv: as_nobody(folder, argv)) if root else in_process
    if root:
        shutil.rmtree(folder)


@pytest.mark.parametrize(("argv", "names"), LOCKED_CASES.values(), ids=LOCKED_CASES.keys())
def test_permissions_are_checked_before_work(locked_project, argv, names):
    folder, run = locked_project
    before = snapshot(folder)
    code, output = run(argv)
    assert code == 2, output
    assert_one_error_line(output, names)
    assert snapshot(folder) == before
