"""Evaluation on scripted roles: records, resume, statistics and the Table-1 Markdown."""

import json

from collabrl.cli import main
from collabrl.evaluate import summarise, table_markdown
from collabrl.records import read_jsonl


def record(system, task, seed, score, grade, tokens, metric="accuracy"):
    return {"system": system, "task_id": task, "seed": seed, "metric": metric, "score": score,
            "itr_grade": grade, "assistant_tokens": tokens, "turns": 2, "satisfied": True}


def test_summary_numbers_and_paired_differences():
    records = [record("base", f"t{i}", 0, 0.0, 2, 1000) for i in range(10)]
    records += [record("trained", f"t{i}", 0, 1.0 if i < 5 else 0.0, 3, 500) for i in range(10)]
    summary = summarise(records, ["base", "trained"], resamples=500)
    trained = summary["accuracy"]["systems"]["trained"]
    assert trained["score"]["mean"] == 50.0 and trained["tokens_k"]["mean"] == 0.5
    assert trained["itr"]["mean"] == 100.0  # grade 3 -> 2 * (3 - 2.5) * 100
    assert summary["accuracy"]["systems"]["base"]["itr"]["mean"] == -100.0
    diffs = {d["figure"]: d for d in summary["accuracy"]["paired"]}
    assert diffs["score"]["mean"] == 50.0 and not diffs["score"]["within_noise"]
    assert diffs["tokens_k"]["mean"] == -0.5


def test_unscored_values_are_excluded_and_counted():
    records = [record("base", "t0", 0, None, None, 100), record("base", "t1", 0, 1.0, 3, 100)]
    figures = summarise(records, ["base"], resamples=200)["accuracy"]["systems"]["base"]
    assert figures["score"]["mean"] == 100.0 and figures["score"]["n"] == 1
    assert figures["score_unscored"] == 1 and figures["itr_unscored"] == 1


def test_table_has_the_paper_shape():
    records = [record("base", "t0", 0, 0.5, 2, 2490), record("proactive", "t0", 0, 1.0, 3, 2180)]
    records += [record("base", "c0", 0, 0.0, 1, 1590, "pass_rate")]
    table = table_markdown(summarise(records, ["base", "proactive"], resamples=200), ["base", "proactive"])
    lines = table.splitlines()
    assert lines[0] == ("| System | Accuracy (%) | Accuracy tok (k) | Accuracy ITR | Pass rate (%) "
                        "| Pass rate tok (k) | Pass rate ITR |")
    assert lines[2].startswith("| base | 50.0 [50.0, 50.0] | 2.49 [2.49, 2.49] | -100.0")
    assert lines[3].startswith("| proactive | 100.0") and lines[3].endswith("| - | - | - |")
    assert "proactive vs base, Accuracy score: +50.00" in table


def test_eval_command_end_to_end_and_resume(workdir, capsys):
    assert main(["eval", "--config", "configs/scripted.yaml"]) == 0
    out = workdir / "runs/scripted/eval"
    records = list(read_jsonl(out / "conversations.jsonl"))
    assert len(records) == 3 * 2 * 2  # tasks x systems x seeds
    math = [r for r in records if r["task_id"] == "math-apples"]
    assert {r["metric"] for r in math} == {"accuracy"} and all(r["score"] == 1.0 for r in math)
    assert all(r["itr_grade"] == 3 for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["accuracy"]["systems"]) == {"base", "proactive"}
    assert (out / "table.md").read_text().startswith("| System |")
    assert main(["eval", "--config", "configs/scripted.yaml"]) == 0
    assert len(list(read_jsonl(out / "conversations.jsonl"))) == 12
