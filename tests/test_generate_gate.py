"""generate checks code tasks in the sandbox before scoring them."""

import json

import pytest

from collabrl.cli import main
from collabrl.cli.generate import gated
from collabrl.config import ConfigError, load_config
from collabrl.types import Task

GOOD = Task(
    id="good",
    description="code",
    intent="add",
    artifact="code",
    reference="def check(candidate):\n    assert candidate(1, 2) == 3\n",
    metadata={
        "test_style": "check",
        "entry_point": "add",
        "canonical_solution": "def add(a, b):\n    return a + b\n",
    },
)
BROKEN = GOOD.model_copy(
    update={
        "id": "broken",
        "metadata": {**GOOD.metadata, "canonical_solution": "def add(a, b):\n    return a - b\n"},
    }
)
DOC = Task(id="doc", description="write", intent="a poem", artifact="document")


async def test_tasks_failing_the_gate_are_left_out(capsys):
    config = load_config(
        None,
        [
            "reward.metrics=[{name: pass_rate}, {name: interactivity}]",
            "sandbox.allow_weak_isolation=true",
        ],
    )  # any machine
    kept = await gated(config, [GOOD, BROKEN, DOC])
    assert [t.id for t in kept] == ["good", "doc"]
    assert "broken" in capsys.readouterr().out


async def test_no_gate_without_pass_rate():
    config = load_config(None, ["reward.metrics=[{name: interactivity}]"])
    assert await gated(config, [BROKEN]) == [BROKEN]


PROCESS_ONLY = "reward.metrics=[{name: pass_rate, options: {isolation: process}}]"


async def test_weak_isolation_is_refused_before_any_task_runs():
    config = load_config(None, [PROCESS_ONLY])
    with pytest.raises(ConfigError, match="sandbox.allow_weak_isolation"):
        await gated(config, [GOOD, BROKEN])


async def test_the_opt_in_lets_the_gate_run_with_weak_isolation():
    config = load_config(None, [PROCESS_ONLY, "sandbox.allow_weak_isolation=true"])
    assert [t.id for t in await gated(config, [GOOD, BROKEN])] == ["good"]


def test_the_cli_turns_the_refusal_into_one_line_and_exit_2(tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(GOOD.model_dump_json() + "\n")
    status = main(
        [
            "generate",
            f"generate.tasks=[{{path: {tasks}}}]",
            PROCESS_ONLY,
            f"generate.output_dir={tmp_path / 'out'}",
            f"cache.path={tmp_path / 'cache'}",
        ]
    )
    out = capsys.readouterr().out
    assert status == 2 and out.startswith("error:") and "bubblewrap" in out
    assert " ".join(out.split()).count("error:") == 1


def test_task_fixture_is_valid_json():
    assert json.loads(GOOD.model_dump_json())["metadata"]["entry_point"] == "add"
