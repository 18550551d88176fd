"""kill -9 while `collabrl generate` is stopping on its budget (the cap reached, conversations
in flight being finished or abandoned), then a rerun with a larger cap: every line parses, no
record is duplicated, and the result equals an uncapped run. The fake server lives in its own
process, so it counts requests across the kill."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from test_engine_resume import N_TASKS, assert_same_records, write_setup

from collabrl.testing.fake_server_process import FakeServerProcess

pytestmark = pytest.mark.slow
LATENCY = 0.1  # seconds per request: the window in which the kill must land


def generate(folder, *overrides):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collabrl",
            "generate",
            "--config",
            str(folder / "config.yaml"),
            *overrides,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_at_the_cap(process, server, cap):
    """SIGKILL once the server has seen ``cap`` requests, plus a random moment more (the
    process is not waited for before, so its pid stays valid even if it has exited)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.request_count < cap:
        time.sleep(0.01)
    # A moment within the calls in flight at the cap: each takes LATENCY, so the process is
    # still finishing them (seeded, so every run kills at the same moment after the cap).
    time.sleep(random.Random(7).uniform(0, LATENCY / 4))
    os.kill(process.pid, signal.SIGKILL)


def test_kill_9_during_a_budget_stop_then_rerun_equals_an_uncapped_run(tmp_path):
    with FakeServerProcess(latency=LATENCY, roleplay=True) as server:
        ref, run = tmp_path / "ref", tmp_path / "run"
        write_setup(ref, server.base_url)
        write_setup(run, server.base_url)
        assert generate(ref).wait(timeout=300) == 0
        ref_requests = server.request_count
        cap = ref_requests // 2
        # Every conversation in flight from the start: no projection stops the run before the
        # cap itself, which is reached after exactly ``cap`` requests.
        victim = generate(
            run, f"budget.requests={cap}", f"generate.conversations_in_flight={N_TASKS}"
        )
        kill_at_the_cap(victim, server, ref_requests + cap)
        assert victim.wait() == -signal.SIGKILL
        rerun = generate(run, "budget.requests=1000000")
        assert rerun.wait(timeout=300) == 0, rerun.stderr.read()

    for name in ("conversations.jsonl", "turns.jsonl"):
        lines = (run / "out" / name).read_text().splitlines()
        assert all(json.loads(line) for line in lines)  # every line parses
    assert_same_records(run, ref)
