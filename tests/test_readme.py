"""The README stays true: its collabrl commands and Python snippets run as written."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from collabrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _collabrl_commands():
    return [
        line.split("#")[0].strip()
        for block in _blocks("bash")
        for line in block.splitlines()
        if line.startswith("collabrl ")
    ]


def test_readme_has_commands_and_snippets():
    assert len(_collabrl_commands()) >= 2
    assert _blocks("python")


def test_readme_commands_run_in_order(workdir):
    """One after another in one folder, as a reader would type them (export reads generate's output)."""
    for command in _collabrl_commands():
        assert main(shlex.split(command)[1:]) == 0, command


@pytest.mark.parametrize("snippet", _blocks("python"))
def test_readme_python_snippet_runs(snippet, workdir):
    result = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
