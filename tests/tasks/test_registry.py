"""Named task sets: what they are, stable splits, limits, local copies and clear errors."""

import importlib.util

import pytest

from collabrl.tasks.registry import (
    TASK_SET_NAMES,
    TEST_FRACTION,
    available_task_sets,
    load_task_set,
    split_of,
)
from collabrl.tasks.sources import TaskSetError

OFFLINE = {"math-chat": 270, "code-chat": 164, "doc-chat": 20}


def test_available_task_sets_describe_every_set():
    infos = {info.name: info for info in available_task_sets()}
    assert (
        tuple(infos)
        == TASK_SET_NAMES
        == (
            "math-chat",
            "code-chat",
            "doc-chat",
            "clarify-chat",
            "math-hard",
            "bigcodebench",
            "medium-doc",
        )
    )
    assert {name: infos[name].size for name in OFFLINE} == OFFLINE
    for name in ("math-hard", "bigcodebench", "medium-doc"):
        assert infos[name].size is None and infos[name].hub
    assert infos["math-hard"].hub == "lighteval/MATH-Hard"
    assert {i.artifact for i in infos.values()} == {"answer", "code", "document", "none"}
    assert infos["clarify-chat"].size == 290  # its split is its own: tests/tasks/test_clarify.py
    assert infos["doc-chat"].metrics[0] == "bleu" and infos["code-chat"].metrics[0] == "pass_rate"
    assert all(info.license and info.source for info in infos.values())


@pytest.mark.parametrize("name", list(OFFLINE))
def test_splits_are_disjoint_cover_the_set_and_are_stable(name):
    everything = load_task_set(name)
    train, test = load_task_set(name, split="train"), load_task_set(name, split="test")
    assert {t.id for t in train} | {t.id for t in test} == {t.id for t in everything}
    assert not {t.id for t in train} & {t.id for t in test}
    assert [t.id for t in load_task_set(name, split="test")] == [t.id for t in test]
    if len(everything) > 100:
        assert abs(len(test) / len(everything) - TEST_FRACTION) < 0.08


def test_split_of_depends_only_on_the_id():
    assert split_of("HumanEval/0") == split_of("HumanEval/0")
    sample = [split_of(f"task-{i}") for i in range(2000)]
    assert 0.17 < sample.count("test") / len(sample) < 0.23
    # A limit takes a prefix of the split, so it never moves a task between splits.
    limited = load_task_set("code-chat", split="test", limit=5)
    assert [t.id for t in limited] == [t.id for t in load_task_set("code-chat", split="test")][:5]
    assert all(split_of(t.id) == "test" for t in limited)


def test_hub_sets_read_a_local_copy(write_dataset):
    rows = [
        {
            "problem": f"Compute {i}+{i}.",
            "solution": f"$\\boxed{{{2 * i}}}$",
            "level": "Level 5",
            "type": "Algebra",
        }
        for i in range(30)
    ]
    path = write_dataset({"train": rows}, "jsonl")
    tasks = load_task_set("math-hard", path=path)
    assert len(tasks) == 30
    train, test = (
        load_task_set("math-hard", "train", path=path),
        load_task_set("math-hard", "test", path=path),
    )
    assert len(train) + len(test) == 30 and all(split_of(t.id) == "test" for t in test)
    assert len(load_task_set("math-hard", limit=4, path=str(path))) == 4


def test_unknown_names_splits_and_limits_are_reported():
    with pytest.raises(TaskSetError, match="unknown task set 'nope'; known task sets: math-chat, "):
        load_task_set("nope")
    with pytest.raises(TaskSetError, match="unknown split 'dev'"):
        load_task_set("doc-chat", split="dev")
    with pytest.raises(TaskSetError, match="at least 1"):
        load_task_set("doc-chat", limit=0)


def test_a_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "champ_dataset" else real(name, *a),
    )
    with pytest.raises(TaskSetError, match="pip install champ-dataset"):
        load_task_set("math-chat")
    [info] = [i for i in available_task_sets() if i.name == "math-chat"]
    assert info.size is None and info.requires == "champ-dataset"


def test_config_lists_several_sources_in_order():
    from collabrl.config import load_config
    from collabrl.tasks.registry import load_tasks

    config = load_config(None, [])
    config = config.model_copy(
        update={
            "generate": config.generate.model_validate(
                {
                    "tasks": [
                        {"set": "doc-chat", "split": "train", "limit": 2},
                        {"set": "math-chat", "split": "test", "limit": 3},
                    ]
                }
            )
        }
    )
    tasks = load_tasks(config.generate.tasks, "generate.tasks")
    assert [t.artifact for t in tasks] == ["document"] * 2 + ["answer"] * 3
    assert all(split_of(t.id) == "train" for t in tasks[:2])
    assert all(split_of(t.id) == "test" for t in tasks[2:])


def test_the_same_task_twice_is_an_error_naming_it(tmp_path):
    from collabrl.config import TaskSource
    from collabrl.tasks.base import TaskFileError
    from collabrl.tasks.registry import load_tasks

    sources = [TaskSource(set="doc-chat", limit=1), TaskSource(set="doc-chat", limit=2)]
    first = load_task_set("doc-chat", limit=1)[0].id
    with pytest.raises(TaskFileError, match=f"eval.tasks: .*{first}"):
        load_tasks(sources, "eval.tasks")
