"""pass^k and the per-persona breakdown of the eval summary, on hand-made records."""

import pytest

from collabrl.breakdowns import pass_hat_k, reliability
from collabrl.evaluate import summarise, table_markdown


def record(system, task, seed, score, persona=None, error=None, tokens=1000):
    return {
        "system": system,
        "task_id": task,
        "seed": seed,
        "metric": "accuracy",
        "score": score,
        "itr_grade": 3,
        "assistant_tokens": tokens,
        "turns": 2,
        "satisfied": True,
        "error": error,
        "messages": [{"role": "user", "content": "hi"}],
        "persona": {"name": persona, "summary": "someone"} if persona else None,
    }


def outcomes(system, per_task):
    """Records of ``system``: per task, one score per seed (None: a failed conversation)."""
    return [
        record(system, task, seed, score, error="user_error:x" if score is None else None)
        for task, scores in per_task.items()
        for seed, score in enumerate(scores)
    ]


def test_pass_hat_k_is_the_chance_that_k_of_n_seeds_all_succeed():
    assert pass_hat_k([True, False, True], 1) == pytest.approx(2 / 3)
    assert pass_hat_k([True, False, True], 2) == pytest.approx(1 / 3)
    assert pass_hat_k([True, False, True], 3) == 0
    assert pass_hat_k([True, True], 3) is None


def test_reliability_per_system_with_failed_conversations_left_out():
    rows = outcomes("a", {"t0": [1, 1, 1], "t1": [1, 0, 1], "t2": [0, 0, 0]})
    rows += outcomes("b", {"t0": [1, 1, None], "t1": [1, 1, 1], "t2": [None, None, None]})
    block = reliability(rows, ["a", "b"], seeds=3, threshold=1.0)
    a = [p["value"] for p in block["systems"]["a"]["pass_k"]]
    assert a == pytest.approx([100 * 5 / 9, 100 * 4 / 9, 100 / 3])
    b = block["systems"]["b"]
    assert b["tasks"] == 2  # t2 only failed: it says nothing about b
    assert [(p["value"], p["tasks"]) for p in b["pass_k"]] == [(100, 2), (100, 2), (100, 1)]


def test_threshold_decides_success_and_unscored_scores_are_left_out():
    rows = [record("a", "t0", 0, 0.8), record("a", "t0", 1, 0.9), record("a", "t0", 2, None)]
    strict = reliability(rows, ["a"], seeds=2, threshold=1.0)["systems"]["a"]["pass_k"]
    loose = reliability(rows, ["a"], seeds=2, threshold=0.75)["systems"]["a"]["pass_k"]
    assert [p["value"] for p in strict] == [0, 0] and [p["value"] for p in loose] == [100, 100]


def test_summary_and_table_carry_pass_k_next_to_the_mean():
    rows = outcomes("a", {"t0": [1, 1, 1], "t1": [1, 0, 1], "t2": [0, 0, 0]})
    summary = summarise(rows, ["a"], resamples=200, seeds=3)
    assert summary["accuracy"]["reliability"]["threshold"] == 1.0
    table = table_markdown(summary, ["a"])
    assert "Accuracy, reliability across seeds (success: score >= 1):" in table
    assert "| System | mean (%) | pass^1 (%) | pass^2 (%) | pass^3 (%) | tasks |" in table
    assert "| a | 55.6 | 55.6 | 44.4 | 33.3 | 3 |" in table
    assert (
        summarise(rows, ["a"], resamples=200)["accuracy"]["reliability"]["seeds"] == 3
    )  # from the records


def test_per_persona_figures_with_intervals_and_failures():
    rows = [record("a", f"t{i}", 0, 1.0, "expert", tokens=500) for i in range(3)]
    rows += [record("a", f"t{i}", 1, 0.0, "novice", tokens=2000) for i in range(2)]
    rows += [record("a", "t2", 1, None, "novice", error="user_error:x")]
    rows += [record("b", f"t{i}", 0, 0.5, "expert") for i in range(3)]
    personas = summarise(rows, ["a", "b"], resamples=200)["accuracy"]["personas"]
    assert set(personas) == {"expert", "novice"} and set(personas["novice"]) == {"a"}
    expert, novice = personas["expert"]["a"], personas["novice"]["a"]
    assert expert["score"]["mean"] == 100.0 and expert["tokens_k"]["mean"] == 0.5
    assert novice["score"]["mean"] == 0.0 and novice["conversations"] == 2 and novice["failed"] == 1
    assert {"low", "high"} <= set(personas["expert"]["b"]["score"])
    table = table_markdown(summarise(rows, ["a", "b"], resamples=200), ["a", "b"])
    assert "| expert | a | 100.0 [100.0, 100.0] |" in table
    assert "| novice | a | 0.0 [0.0, 0.0] |" in table and "| expert | b | 50.0" in table


def test_no_persona_no_breakdown():
    summary = summarise([record("a", "t0", 0, 1.0)], ["a"], resamples=200)
    assert summary["accuracy"]["personas"] == {}
    assert "per persona" not in table_markdown(summary, ["a"])
