"""A recorded experiment replays elsewhere with no model, no key and no server, byte for byte.

Every role talks to the fake OpenAI server, which gives a new answer to every request (so an
answer asked again would show). ``generate`` records (``cache.mode=record``), ``export``, ``eval``
(readwrite: it adds to the recording) and ``report`` run; then the server stops and, in a fresh
folder holding only the config, the task file and the .sqlite file, the same commands run with
``cache.mode=replay`` while every outgoing connection is counted and refused.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

from collabrl.cli import main
from collabrl.testing.fake_openai import FakeOpenAIServer
from collabrl.testing.roleplay import fake_server_reply

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
UNSET_KEY = "COLLABRL_TEST_REPLAY_UNSET_KEY"
REPORT_TIME = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d UTC")  # the report's "created" stamp


def write_experiment(folder: Path, base_url: str) -> None:
    """A config with relative paths only, and its tasks: what a colleague gets."""
    (folder / "examples").mkdir(parents=True)
    shutil.copyfile(ROOT / "examples/tasks.jsonl", folder / "examples/tasks.jsonl")
    roles = "".join(
        f"  {role}: {{kind: openai, model: fake-{role}, base_url: '{base_url}', "
        f"api_key_env: {UNSET_KEY}, retry: {{max_attempts: 1}}}}\n"
        for role in ("policy", "user", "judge")
    )
    (folder / "experiment.yaml").write_text(
        f"roles:\n{roles}"
        "cache: {path: recording.sqlite}\n"
        "reward: {samples: 2, window: 1, metrics: [{name: interactivity}, {name: token_efficiency}]}\n"
        "generate: {tasks: {path: examples/tasks.jsonl}, candidates: 2, max_turns: 2, "
        "conversations_in_flight: 1, output_dir: runs/generate}\n"
        "export: {input_dir: runs/generate, output_dir: runs/export}\n"
        "eval: {tasks: {path: examples/tasks.jsonl}, seeds: 1, max_turns: 2, "
        "conversations_in_flight: 1, output_dir: runs/eval}\n"
    )


def run_experiment(generate_mode: str, eval_mode: str) -> None:
    config = ["--config", "experiment.yaml"]
    assert main(["generate", *config, f"cache.mode={generate_mode}"]) == 0
    assert main(["export", *config]) == 0
    assert main(["eval", *config, f"cache.mode={eval_mode}"]) == 0
    assert main(["report", "runs/generate", "runs/eval", "--output", "runs/report.html"]) == 0


def outputs(folder: Path) -> dict[str, bytes]:
    files = sorted(p for p in (folder / "runs").rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


@pytest.fixture
def refused_connections(monkeypatch):
    """Every outgoing socket connection attempt, each refused (there is no network)."""
    attempts: list[object] = []

    def refuse(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError(f"test: no connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """The recording folder after the whole experiment ran against the (now stopped) server."""
    monkeypatch.delenv(UNSET_KEY, raising=False)
    folder = tmp_path / "recorded"
    with FakeOpenAIServer(reply_fn=fake_server_reply) as server:
        write_experiment(folder, server.base_url)
        monkeypatch.chdir(folder)
        run_experiment("record", "readwrite")
        assert server.request_count > 100
    assert not (folder / "recording.sqlite-wal").exists()
    return folder


def replay_folder(recorded: Path, tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "replay"
    folder.mkdir()
    for name in ("experiment.yaml", "examples", "recording.sqlite"):  # not the -wal/-shm files
        copy = shutil.copytree if (recorded / name).is_dir() else shutil.copyfile
        copy(recorded / name, folder / name)
    monkeypatch.chdir(folder)
    return folder


def test_replay_in_a_fresh_folder_reproduces_every_output(
    recorded, tmp_path, monkeypatch, refused_connections
):
    folder = replay_folder(recorded, tmp_path, monkeypatch)
    run_experiment("replay", "replay")
    assert refused_connections == []
    expected, replayed = outputs(recorded), outputs(folder)
    assert sorted(replayed) == sorted(expected)
    report = "runs/report.html"
    assert REPORT_TIME.sub(b"", replayed.pop(report)) == REPORT_TIME.sub(b"", expected.pop(report))
    assert replayed == expected  # generate, export and eval files (and manifests) byte for byte


def test_a_replay_miss_fails_the_run_with_the_role_and_the_request(
    recorded, tmp_path, monkeypatch, capsys, refused_connections
):
    replay_folder(recorded, tmp_path, monkeypatch)
    capsys.readouterr()
    changed = ["user.reply_format=plain", "generate.output_dir=runs/changed"]  # another prompt
    assert main(["generate", "--config", "experiment.yaml", "cache.mode=replay", *changed]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "all 3 conversations failed" in out and "user_error:replay_miss" in out
    assert (
        "cache.mode is replay and recording.sqlite has no answer for role 'user', kind "
        "openai, model fake-user, base_url http://127.0.0.1:" in out
    )
    assert re.search(r"sample \d+, last message \(\w+\) '", out)
    assert refused_connections == []
