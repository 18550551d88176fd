"""generate checks code tasks in the sandbox before scoring them."""

import json

from collabrl.cli.generate import gated
from collabrl.config import load_config
from collabrl.types import Task

GOOD = Task(id="good", description="code", intent="add", artifact="code",
            reference="def check(candidate):\n    assert candidate(1, 2) == 3\n",
            metadata={"test_style": "check", "entry_point": "add",
                      "canonical_solution": "def add(a, b):\n    return a + b\n"})
BROKEN = GOOD.model_copy(update={"id": "broken", "metadata": {
    **GOOD.metadata, "canonical_solution": "def add(a, b):\n    return a - b\n"}})
DOC = Task(id="doc", description="write", intent="a poem", artifact="document")


async def test_tasks_failing_the_gate_are_left_out(capsys):
    config = load_config(None, ["reward.metrics=[{name: pass_rate}, {name: interactivity}]"])
    kept = await gated(config, [GOOD, BROKEN, DOC])
    assert [t.id for t in kept] == ["good", "doc"]
    assert "broken" in capsys.readouterr().out


async def test_no_gate_without_pass_rate():
    config = load_config(None, ["reward.metrics=[{name: interactivity}]"])
    assert await gated(config, [BROKEN]) == [BROKEN]


def test_task_fixture_is_valid_json():
    assert json.loads(GOOD.model_dump_json())["metadata"]["entry_point"] == "add"
