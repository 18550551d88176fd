"""Model-written code runs only where the isolation holds; elsewhere the sandbox refuses.

Every case of ``sandbox_attacks.py`` (writing outside the work dir, the host's /tmp, the Python
installation, more processes than the limit, another process's environment, the network) is
tried as root and as an unprivileged user (``nobody``, started with ``setpriv`` when the tests
run as root), with and without bubblewrap. In each setting the sandbox either blocks every case
or refuses before running anything, and a weak level runs only with the explicit opt-in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import sandbox_attacks

from collabrl.config import ConfigError, load_config
from collabrl.sandbox import Sandbox, SandboxRefused, config_sandbox, describe_sandbox, isolation
from collabrl.sandbox import core as sandbox_core

ROOT = os.geteuid() == 0
HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


@pytest.fixture
def no_bwrap(monkeypatch):
    """This machine as if bubblewrap were not installed."""
    found = isolation.tool
    monkeypatch.setattr(isolation, "tool", lambda name: None if name == "bwrap" else found(name))
    monkeypatch.setattr(sandbox_core, "_detected", {})


def attack_box(**options) -> Sandbox:
    return Sandbox(timeout_s=20, max_processes=sandbox_attacks.MAX_PROCESSES, **options)


def assert_safe(outcome: dict) -> None:
    """Every case blocked, or nothing run at all: a refusal that names the fix, or no level."""
    if outcome.get("unavailable"):
        assert outcome["leaks"] == [] and "verdict" not in outcome
        return
    if outcome["refused"] is not None:
        assert "bubblewrap" in outcome["refused"], outcome
        assert "sandbox.allow_weak_isolation" in outcome["refused"], outcome
        assert "\n" not in outcome["refused"]
        return
    assert not outcome["weak"] and outcome["verdict"] == "pass", outcome
    assert outcome["reported"] == [] and outcome["leaks"] == [], outcome


# ------------------------------------------------------------------ as the user running the tests


async def test_the_default_sandbox_blocks_every_attack_or_refuses():
    assert_safe(await sandbox_attacks.attack(attack_box()))


async def test_without_bubblewrap_every_attack_is_blocked_or_refused(no_bwrap):
    outcome = await sandbox_attacks.attack(attack_box())
    assert_safe(outcome)
    if not ROOT:  # unshare cannot drop to another uid without privileges
        assert outcome["refused"] is not None


@pytest.mark.parametrize("level", isolation.LEVELS)
async def test_each_level_blocks_every_attack_or_refuses(level):
    assert_safe(await sandbox_attacks.attack(attack_box(isolation=level)))


async def test_the_process_level_is_refused_without_the_opt_in():
    with pytest.raises(SandboxRefused, match="process") as refusal:
        await Sandbox(isolation="process").isolation()
    assert isinstance(refusal.value, ConfigError)
    assert "install bubblewrap" in str(refusal.value)


async def test_the_opt_in_runs_a_weak_level_and_says_so():
    box = Sandbox(timeout_s=5, isolation="process", allow_weak_isolation=True)
    iso = await box.isolation()
    assert iso.weaknesses and not iso.network_cut
    result = await box.run_tests(
        "def f():\n    return 1\n", sandbox_attacks.CHECK_ONE, "check", "f"
    )
    assert result.verdict == "pass" and result.weak_isolation and result.isolation == "process"


async def test_the_default_runs_only_a_strong_level():
    try:
        iso = await Sandbox().isolation()
    except SandboxRefused as refusal:  # no strong level on this machine
        assert "install bubblewrap" in str(refusal)
        return
    assert iso.weaknesses == ()
    assert iso.network_cut and iso.filesystem_protected and iso.processes_limited
    assert iso.unprivileged and iso.environ_hidden


async def test_the_description_names_level_and_opt_in():
    default = await describe_sandbox(Sandbox())
    assert default["allow_weak_isolation"] is False
    if default["refused"] is None:
        assert default["weak_isolation"] is False and default["weaknesses"] == []
        assert default["level"] == (await Sandbox().isolation()).level
    else:
        assert default["level"] is None and "bubblewrap" in default["refused"]
    refused = await describe_sandbox(Sandbox(isolation="process"))
    assert refused["level"] is None and "bubblewrap" in refused["refused"]
    weak = await describe_sandbox(Sandbox(isolation="process", allow_weak_isolation=True))
    assert weak["level"] == "process" and weak["weak_isolation"] is True
    assert weak["guarantees"]["network_cut"] is False and weak["refused"] is None
    json.dumps([default, refused, weak])


def test_the_config_section_reaches_the_sandbox():
    config = load_config(
        None,
        [
            "sandbox.allow_weak_isolation=true",
            "eval.task_metrics=[{name: pass_rate, options: {isolation: process}}]",
        ],
    )
    box = config_sandbox(config)
    assert box.allow_weak_isolation and box.requested == "process"
    assert not config_sandbox(load_config(None, [])).allow_weak_isolation
    with pytest.raises(ConfigError, match="sandbox"):
        load_config(None, ["sandbox.allow_weak=true"])


# ------------------------------------------------------------------ as an unprivileged user


def _unprivileged_python() -> list[str]:
    """How to start Python as an unprivileged user that can import collabrl."""
    if not ROOT:
        return [sys.executable]
    drop = [
        shutil.which("setpriv") or "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ]
    wanted = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, shutil.which(f"python{wanted}"), f"/usr/bin/python{wanted}"]
    reexec = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True); "
        "print(sys.version[:4])"
    )  # setpriv may exec what the user itself cannot
    for python in dict.fromkeys(filter(None, candidates)):
        probe = subprocess.run(
            [*drop, python, "-c", reexec], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0 and probe.stdout.startswith(wanted):
            return [*drop, python]
    pytest.skip(f"no Python {wanted} that the user nobody may run (the test needs one)")


def as_unprivileged(*args: str) -> dict:
    paths = [
        str(SRC),
        str(HERE),
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(paths),
        "LANG": "C.UTF-8",
    }
    done = subprocess.run(
        [*_unprivileged_python(), str(HERE / "sandbox_attacks.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["uid"] != 0
    return outcome


def test_as_an_unprivileged_user_every_attack_is_blocked_or_refused():
    assert_safe(as_unprivileged())


def test_as_an_unprivileged_user_without_bubblewrap_the_sandbox_refuses():
    outcome = as_unprivileged("--no-bwrap")
    assert outcome["refused"] is not None and "bubblewrap" in outcome["refused"]


@pytest.mark.parametrize("level", ["unshare", "process"])
def test_as_an_unprivileged_user_weak_levels_are_refused(level):
    outcome = as_unprivileged("--isolation", level)
    assert outcome["refused"] is not None and level in outcome["refused"]
