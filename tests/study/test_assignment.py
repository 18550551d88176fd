"""Blind, balanced, counterbalanced assignment of participants to systems and tasks."""

from collections import Counter
from itertools import pairwise

import pytest

from collabrl.study.assignment import assign, label, williams_square

TASKS = ["t0", "t1", "t2", "t3"]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_williams_square_is_latin_and_carryover_balanced(k):
    rows = williams_square(k)
    assert len(rows) == (k if k % 2 == 0 else 2 * k) or k == 1
    for row in rows:
        assert sorted(row) == list(range(k))
    for column in zip(*rows):
        assert len(set(Counter(column).values())) == 1  # each system equally often per position
    follows = Counter(pair for row in rows for pair in pairwise(row))
    if k > 1:
        assert set(follows) == {(a, b) for a in range(k) for b in range(k) if a != b}
        assert len(set(follows.values())) == 1  # each ordered pair equally often


def test_three_systems_two_each_are_balanced_by_position():
    systems = ["a", "b", "c"]
    plans = [assign(i, systems, 2, TASKS) for i in range(6)]
    by_position = [Counter(p[j].system for p in plans) for j in range(2)]
    assert by_position == [Counter({"a": 2, "b": 2, "c": 2})] * 2
    assert all(p[0].system != p[1].system for p in plans)


def test_labels_are_neutral_and_by_position():
    plan = assign(1, ["collabllm", "base"], 2, TASKS)
    assert [a.label for a in plan] == ["Assistant A", "Assistant B"] == [label(0), label(1)]
    assert [a.system for a in plan] == ["base", "collabllm"]  # second row: reversed order
    assert all("collab" not in a.label and "base" not in a.label for a in plan)


def test_tasks_differ_within_a_participant_and_balance_across_systems():
    systems = ["a", "b"]
    plans = [assign(i, systems, 2, TASKS) for i in range(2 * len(TASKS))]
    assert all(len({a.task_id for a in p}) == 2 for p in plans)
    pairs = Counter((a.system, a.task_id) for p in plans for a in p)
    assert set(pairs.values()) == {2} and len(pairs) == len(systems) * len(TASKS)


def test_one_system_each_splits_participants_evenly():
    counts = Counter(assign(i, ["a", "b", "c", "d"], 1, TASKS)[0].system for i in range(20))
    assert counts == Counter({"a": 5, "b": 5, "c": 5, "d": 5})


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        assign(0, ["a"], 2, TASKS)
    with pytest.raises(ValueError):
        assign(0, ["a"], 1, [])
