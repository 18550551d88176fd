"""Fixtures shared across the test suite."""

import os
import shutil
from pathlib import Path

# Tiny test models run faster on one thread than on two contending ones (and the suite's
# subprocesses inherit this); benchmarks, which are not tests, keep torch's default.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch project folder with the shipped configs/ and examples/, as the current dir."""
    for folder in ("configs", "examples"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def user_without_key(workdir, monkeypatch) -> str:
    """configs/scripted.yaml with the user role bound to a hosted API whose key variable is
    unset: every conversation fails at its first call, without any network request."""
    monkeypatch.delenv("COLLABRL_TEST_UNSET_KEY", raising=False)
    config = yaml.safe_load((workdir / "configs/scripted.yaml").read_text())
    config["roles"]["user"] = {
        "kind": "openai",
        "model": "gpt-test",
        "base_url": "https://api.example.invalid/v1",
        "api_key_env": "COLLABRL_TEST_UNSET_KEY",
    }
    path = workdir / "configs/no-key.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (launched directly, no browser download);
    tests using it are skipped, with the reason, when either is missing."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install playwright (dev extra)"
    )
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
