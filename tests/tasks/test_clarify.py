"""clarify-chat: the shipped file is what the templates make, and its test split is held out."""

import json
from collections import Counter

from collabrl.metrics.clarification import mentions
from collabrl.tasks.clarify import COMPLETE_GROUP, clarify_chat_file, make_tasks
from collabrl.tasks.registry import load_task_set


def test_the_shipped_file_is_what_the_templates_make():
    shipped = [json.loads(line) for line in clarify_chat_file().read_text().splitlines()]
    assert shipped == [t.model_dump(mode="json") for t in make_tasks()]


def test_test_requests_come_from_other_templates_than_training_ones():
    train, test = load_task_set("clarify-chat", "train"), load_task_set("clarify-chat", "test")
    assert len(train) == 180 and len(test) == 110
    assert not {t.metadata["template"] for t in train} & {t.metadata["template"] for t in test}
    for split in (train, test):
        assert len({t.metadata["opening"] for t in split}) == len(split)  # no two read the same


def test_requests_miss_their_detail_and_complete_ones_hold_it():
    tasks = make_tasks()
    for task in tasks:
        [keyword] = task.metadata["detail_keywords"]
        assert keyword in task.metadata["detail"] and mentions(task.intent, keyword)
        needs = task.metadata["needs_clarification"]
        assert mentions(task.metadata["opening"], keyword) is not needs, task.id
        assert (task.metadata.get("eval_group") == COMPLETE_GROUP) is not needs
    complete = [t for t in tasks if not t.metadata["needs_clarification"]]
    assert Counter(t.metadata["split"] for t in complete) == {"test": 30, "train": 24}


def test_a_limit_takes_every_template_and_both_kinds():
    head = load_task_set("clarify-chat", "test", limit=22)
    assert len(Counter(t.metadata["template"] for t in head)) == 10
    kinds = Counter(t.metadata["needs_clarification"] for t in head)
    assert kinds[True] >= 12 and kinds[False] >= 4
    train = load_task_set("clarify-chat", "train", limit=96)  # the demo's training requests
    assert set(Counter(t.metadata["template"] for t in train).values()) == {8}
    assert Counter(t.metadata["needs_clarification"] for t in train) == {True: 84, False: 12}
