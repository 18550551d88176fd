"""One agreed style for the whole tree: ``ruff format`` (and ``ruff check``) leave nothing to change.

Run ``ruff format src tests benchmarks examples`` to fix a formatting failure; the settings live
in pyproject.toml (``[tool.ruff]``).
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE = ["src", "tests", "benchmarks", "examples"]


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_ruff_finds_nothing_to_change(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *TREE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
