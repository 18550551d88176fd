"""Real run folders for the report tests: the CLI's generate and eval on the scripted config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INJECTION = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> pwned'


@pytest.fixture(scope="session")
def scripted_runs_with(tmp_path_factory) -> Callable[..., dict[str, Path]]:
    """``collabrl generate`` and ``collabrl eval`` with configs/scripted.yaml and the given
    ``key=value`` overrides, in a temp folder; run once per set of overrides in a session."""
    made: dict[tuple[str, ...], dict[str, Path]] = {}

    def runs(*overrides: str) -> dict[str, Path]:
        if overrides not in made:
            made[overrides] = _generate_and_eval(tmp_path_factory.mktemp("scripted"), overrides)
        return made[overrides]

    return runs


@pytest.fixture(scope="session")
def scripted_runs(scripted_runs_with) -> dict[str, Path]:
    """The scripted config's runs as shipped."""
    return scripted_runs_with()


def _generate_and_eval(work: Path, overrides: tuple[str, ...]) -> dict[str, Path]:
    shutil.copytree(ROOT / "configs", work / "configs")
    shutil.copytree(ROOT / "examples", work / "examples")
    for command in ("generate", "eval"):
        done = subprocess.run(
            [sys.executable, "-m", "collabrl", command, "--config", "configs/scripted.yaml"]
            + list(overrides),
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return {"generate": work / "runs/scripted/generate", "eval": work / "runs/scripted/eval"}


def append_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def injected_runs(scripted_runs, tmp_path) -> dict[str, Path]:
    """Copies of the real runs plus one conversation each whose texts (user, reply, candidate,
    future, judge) carry a script that must be shown, never run."""
    runs = {
        kind: shutil.copytree(folder, tmp_path / kind) for kind, folder in scripted_runs.items()
    }
    record = read_lines(runs["eval"] / "conversations.jsonl")[0]
    record = {
        **record,
        "task_id": "injected-task",
        "messages": [
            {"role": "user", "content": f"user says {INJECTION}"},
            {"role": "assistant", "content": f"reply {INJECTION}"},
        ],
    }
    append_jsonl(runs["eval"] / "conversations.jsonl", [record])
    turn = read_lines(runs["generate"] / "turns.jsonl")[0]
    candidate = turn["candidates"][0]
    future = candidate["futures"][0]
    future["future"]["conversation"]["messages"][-1]["content"] = f"future {INJECTION}"
    for score in future["scores"].values():
        score["raw"] = [f"judge {INJECTION}"]
    turn["candidates"][0] = {**candidate, "text": f"candidate {INJECTION}"}
    append_jsonl(
        runs["generate"] / "turns.jsonl",
        [{**turn, "conversation_id": "injected-conv", "task_id": "injected-task"}],
    )
    return runs
