"""Personas of the simulated user: file loading and its errors, deterministic picks, the prompt,
and the persona carried by every record (data engine, simulate, eval)."""

import json
import re

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.cli import main
from collabrl.config import ConfigError, GenerateConfig
from collabrl.engine import DataEngine
from collabrl.metrics.efficiency import TokenEfficiency
from collabrl.personas import Persona, PersonaSet, load_personas, persona_block, persona_of
from collabrl.prompts import load_prompt
from collabrl.records import read_jsonl
from collabrl.reward import MultiturnReward, WeightedMetric
from collabrl.rollout import Assistant, ForwardSampler
from collabrl.simulator import UserSimulator
from collabrl.types import Conversation, Task

TASK = Task(id="t1", description="write a poem", intent="A four-line poem about autumn rain.")
PERSONA_LINE = re.compile(r"## Who you are\n\n(.+)\n")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_set_ships_well_formed_personas():
    personas = load_personas("default").personas
    assert 6 <= len(personas) <= 10
    assert len({p.name for p in personas}) == len(personas)
    for p in personas:  # every default persona fills every known trait
        assert all([p.expertise, p.patience, p.verbosity, p.disclosure, p.style]), p.name


def test_yaml_and_jsonl_files_load_with_free_form_fields(tmp_path):
    yaml_file = write(
        tmp_path, "p.yaml", "- {name: a, summary: A person., age: 70, mood: grumpy}\n"
    )
    jsonl_file = write(
        tmp_path, "p.jsonl", '{"name": "b", "summary": "B."}\n\n{"name": "c", "summary": "C."}\n'
    )
    [a] = load_personas(yaml_file).personas
    assert a.traits() == {"Age": "70", "Mood": "grumpy"} and a.record()["age"] == 70
    assert [p.name for p in load_personas(jsonl_file).personas] == ["b", "c"]
    assert load_personas(None) is None


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("p.yaml", "- {name: a}\n", "p.yaml, entry 1: field 'summary': Field required"),
        (
            "p.yaml",
            "- {name: a, summary: x}\n- {name: a, summary: y}\n",
            "entry 2: the name 'a' is used twice",
        ),
        ("p.yaml", "- {name: a, summary: x, patience: [1, 2]}\n", "entry 1: field 'patience'"),
        (
            "p.yaml",
            "- {name: a, summary: x, notes: {deep: 1}}\n",
            "entry 1: field 'notes': extra fields",
        ),
        ("p.yaml", "name: a\n", "expected a list of personas"),
        ("p.yaml", "- just a string\n", "entry 1: expected a mapping of fields, got str"),
        ("p.yaml", "- [unclosed\n", "not valid YAML"),
        ("p.yaml", "[]\n", "holds no personas"),
        ("p.jsonl", '{"name": "a", "summary": "x"}\n{oops\n', "p.jsonl, line 2: not JSON"),
    ],
)
def test_bad_persona_files_name_the_file_entry_and_field(tmp_path, name, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_personas(write(tmp_path, name, text))


def test_a_missing_file_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"user.personas: cannot read .*nope.yaml"):
        load_personas(tmp_path / "nope.yaml")


def test_picks_depend_on_task_and_seed_only():
    first, again = load_personas("default"), load_personas("default")
    picks = [[first.pick(f"task-{i}", s).name for s in range(8)] for i in range(20)]
    assert picks == [[again.pick(f"task-{i}", s).name for s in range(8)] for i in range(20)]
    assert all(len(set(row)) == 8 for row in picks)  # a task's seeds meet different personas
    assert len({row[0] for row in picks}) > 3  # and tasks start at different personas
    task = first.cast(TASK, 3)
    assert persona_of(task)["name"] == first.pick("t1", 3).name and persona_of(TASK) is None
    assert task.id == TASK.id and task.intent == TASK.intent


def test_the_prompt_carries_the_persona_and_is_unchanged_without_one():
    persona = Persona(
        name="grump", summary="A grumpy retiree.", patience="Very low.", hobby="bowls"
    )
    task = PersonaSet([persona], "test").cast(TASK, 0)
    system = UserSimulator(ScriptedBackend("x")).prompt(task, Conversation())[0].content
    assert "## Who you are\n\nA grumpy retiree." in system
    assert "- Patience: Very low.\n- Hobby: bowls" in system
    assert system.index("## Who you are") < system.index("## How to behave")
    plain = UserSimulator(ScriptedBackend("x")).prompt(TASK, Conversation())[0].content
    assert "Who you are" not in plain and "grump" not in plain
    assert plain == system.replace(persona_block(task), "")
    assert "${persona}## How to behave" in load_prompt("user_simulator")


def user_reply(messages, params, index):
    """Opens, asks once more, then ends; every reply names the persona its prompt describes."""
    persona = PERSONA_LINE.search(messages[0].content).group(1)
    last = messages[-1].content
    if "final" in last:
        return json.dumps({"message": "", "terminate": True})
    return json.dumps({"message": f"[{persona}] more please, draft {index}"})


def policy_reply(messages, params, index):
    return "final answer" if any(m.role == "assistant" for m in messages) else f"draft {index}"


async def test_engine_records_the_persona_and_futures_play_the_same_person(tmp_path):
    user = UserSimulator(ScriptedBackend(reply_fn=user_reply), max_reasks=0)
    policy = Assistant(ScriptedBackend(reply_fn=policy_reply))
    sampler = ForwardSampler(user, policy, samples=2, window=1)
    reward = MultiturnReward(
        {"tokens": WeightedMetric(TokenEfficiency(form="penalty", lam=0.01), 1.0)}, sampler
    )
    personas = load_personas("default")
    engine = DataEngine(
        GenerateConfig(candidates=2, max_turns=3),
        user=user,
        policy=policy,
        proactive=policy,
        reward=reward,
        personas=personas,
    )
    tasks = [Task(id=f"t{i}", description="chat", intent=f"need {i}") for i in range(4)]
    await engine.run(tasks, tmp_path)
    by_id = {r["task_id"]: r for r in read_jsonl(tmp_path / "conversations.jsonl")}
    for task_id, record in by_id.items():
        expected = personas.pick(task_id, 0)
        assert record["status"] == "ok" and record["persona"]["name"] == expected.name
        assert record["persona"]["patience"] == expected.patience
        summary = f"[{expected.summary}]"
        user_messages = [m["content"] for m in record["messages"] if m["role"] == "user"]
        futures = [
            m["content"]
            for t in read_jsonl(tmp_path / "turns.jsonl")
            if t["task_id"] == task_id
            for c in t["candidates"]
            for f in c["futures"]
            for m in f["future"]["conversation"]["messages"]
            if m["role"] == "user"
        ]
        assert user_messages and futures
        assert all(m.startswith(summary) for m in user_messages + futures)


def test_simulate_and_eval_records_carry_the_persona(workdir):
    assert main(["simulate", "--config", "configs/scripted.yaml", "user.personas=default"]) == 0
    personas = load_personas("default")
    records = list(read_jsonl(workdir / "runs/scripted/conversations.jsonl"))
    assert records and all(
        r["persona"]["name"] == personas.pick(r["task_id"], 0).name for r in records
    )
    assert main(["eval", "--config", "configs/scripted.yaml", "user.personas=default"]) == 0
    records = list(read_jsonl(workdir / "runs/scripted/eval/conversations.jsonl"))
    assert {r["seed"] for r in records} == {0, 1}
    for r in records:  # every system meets the persona of (task, seed)
        assert r["persona"]["name"] == personas.pick(r["task_id"], r["seed"]).name
        assert r["persona"]["summary"] == personas.pick(r["task_id"], r["seed"]).summary
    summary = json.loads((workdir / "runs/scripted/eval/summary.json").read_text())
    seen = {r["persona"]["name"] for r in records}
    assert set().union(*(group["personas"] for group in summary.values())) == seen
    assert all(group["reliability"]["seeds"] == 2 for group in summary.values())
    assert (
        "per persona of the simulated user" in (workdir / "runs/scripted/eval/table.md").read_text()
    )


def test_without_personas_records_say_none(workdir):
    assert main(["simulate", "--config", "configs/scripted.yaml", "simulate.tasks.limit=1"]) == 0
    [record] = read_jsonl(workdir / "runs/scripted/conversations.jsonl")
    assert record["persona"] is None


def test_a_bad_persona_setting_is_a_clear_cli_error(workdir, capsys):
    write(workdir, "bad.yaml", "- {name: a}\n")
    assert main(["simulate", "--config", "configs/scripted.yaml", "user.personas=bad.yaml"]) == 2
    out = capsys.readouterr().out
    assert "error:" in out and "bad.yaml, entry 1: field 'summary'" in out
    assert main(["eval", "--config", "configs/scripted.yaml", "user.personas=missing.yaml"]) == 2
    assert "user.personas: cannot read missing.yaml" in capsys.readouterr().out


def test_the_rule_user_ignores_the_persona_but_records_name_it(workdir):
    assert (
        main(
            [
                "simulate",
                "--config",
                "configs/scripted.yaml",
                "user.kind=rule",
                "user.personas=default",
                "simulate.tasks.path=null",
                "simulate.tasks.set=clarify-chat",
                "simulate.tasks.limit=2",
            ]
        )
        == 0
    )
    personas = load_personas("default")
    records = list(read_jsonl(workdir / "runs/scripted/conversations.jsonl"))
    assert len(records) == 2
    for r in records:
        assert r["persona"]["name"] == personas.pick(r["task_id"], 0).name
        assert "Who you are" not in json.dumps(r["conversation"])
