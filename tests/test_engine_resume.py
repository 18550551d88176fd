"""kill -9 in the middle of `collabrl generate`, then rerun: nothing repeated, nothing broken,
and the result equals an uninterrupted run. Requests are counted by a fake server that lives in
its own process, so it survives the kill."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from collabrl.records import read_jsonl
from collabrl.testing.fake_server_process import FakeServerProcess

pytestmark = pytest.mark.slow

N_TASKS = 24


def write_setup(folder, base_url):
    folder.mkdir()
    tasks = [
        {
            "id": f"task-{i:02d}",
            "description": "chat",
            "intent": f"Topic{i:02d} zebra{i:02d} about something {i}",
            "artifact": "none",
        }
        for i in range(N_TASKS)
    ]
    (folder / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    roles = "".join(
        f"  {role}:\n    kind: openai\n    model: fake\n    base_url: {base_url}\n"
        f"    max_concurrency: 8\n    generation: {{seed: 1, temperature: 1.0}}\n"
        for role in ("policy", "user", "judge")
    )
    (folder / "config.yaml").write_text(
        f"roles:\n{roles}"
        f"cache:\n  path: {folder / 'cache.sqlite'}\n"
        "reward:\n  samples: 2\n  window: 1\n"
        "  metrics: [{name: interactivity}, {name: token_efficiency}]\n"
        f"generate:\n  tasks: {{path: {folder / 'tasks.jsonl'}}}\n  candidates: 2\n  max_turns: 2\n"
        f"  conversations_in_flight: 4\n  output_dir: {folder / 'out'}\n"
    )


def generate(folder):
    return subprocess.Popen(
        [sys.executable, "-m", "collabrl", "generate", "--config", str(folder / "config.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_mid_run(process, progress_file):
    """SIGKILL once a quarter of the conversations are done, plus a random moment more."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if progress_file.exists() and progress_file.read_text().count("\n") >= N_TASKS // 4:
            break
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.3))
    os.kill(process.pid, signal.SIGKILL)


def records(folder, name):
    return list(read_jsonl(folder / "out" / name))


def canonical(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def assert_same_records(run, ref):
    """``run`` holds every conversation once, no turn twice, and the same records as ``ref``."""
    convs, turns = records(run, "conversations.jsonl"), records(run, "turns.jsonl")
    assert len({c["conversation_id"] for c in convs}) == len(convs) == N_TASKS
    keys = [(t["conversation_id"], t["turn"]) for t in turns]
    assert len(keys) == len(set(keys))
    assert canonical(convs) == canonical(records(ref, "conversations.jsonl"))
    assert canonical(turns) == canonical(records(ref, "turns.jsonl"))


def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path):
    with FakeServerProcess(latency=0.03, roleplay=True) as server:
        ref, run = tmp_path / "ref", tmp_path / "run"
        write_setup(ref, server.base_url)
        write_setup(run, server.base_url)
        assert generate(ref).wait(timeout=300) == 0
        ref_requests = server.request_count

        victim = generate(run)
        kill_mid_run(victim, run / "out" / "conversations.jsonl")
        victim.wait()
        done_before = {c["conversation_id"] for c in records(run, "conversations.jsonl")}
        assert 0 < len(done_before) < N_TASKS, "the kill should land mid-run"
        before = server.request_count

        rerun = generate(run)
        assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
        rerun_requests = server.requests[before:]

    assert_same_records(run, ref)
    # Conversations finished before the kill cost the rerun no request at all ...
    markers = {cid: f"Topic{cid[-2:]} zebra{cid[-2:]}" for cid in done_before}
    for request in rerun_requests:
        text = json.dumps(request["body"])
        assert not any(marker in text for marker in markers.values())
    # ... and overall at most the requests in flight at the kill were sent twice.
    run_requests = (before - ref_requests) + len(rerun_requests)
    assert run_requests - ref_requests <= 8
