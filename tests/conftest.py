"""Fixtures shared across the test suite."""

import os
import shutil
from pathlib import Path

# Tiny test models run faster on one thread than on two contending ones (and the suite's
# subprocesses inherit this); benchmarks, which are not tests, keep torch's default.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch project folder with the shipped configs/ and examples/, as the current dir."""
    for folder in ("configs", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    return tmp_path
