"""Evaluation on scripted roles: records, resume, statistics and the Table-1 Markdown."""

import json

from collabrl.cli import main
from collabrl.evaluate import summarise, table_markdown
from collabrl.records import read_jsonl


def record(system, task, seed, score, grade, tokens, metric="accuracy", error=None):
    return {
        "system": system,
        "task_id": task,
        "seed": seed,
        "metric": metric,
        "score": score,
        "itr_grade": grade,
        "assistant_tokens": tokens,
        "turns": 2,
        "satisfied": True,
        "error": error,
    }


def failed(system, task, seed):
    """What a conversation whose simulator failed at once looks like on disk."""
    return {
        **record(system, task, seed, None, None, 0, error="user_error:transient"),
        "turns": 0,
        "satisfied": False,
    }


def test_failed_conversations_are_left_out_of_every_figure_and_counted():
    records = [record("base", f"t{i}", 0, 1.0, 3, 1000) for i in range(4)]
    records += [failed("base", f"t{i}", 1) for i in range(4)]
    records += [record("trained", f"t{i}", s, 1.0, 3, 1000) for i in range(4) for s in (0, 1)]
    summary = summarise(records, ["base", "trained"], resamples=200)["accuracy"]
    base = summary["systems"]["base"]
    assert base["conversations"] == 4 and base["failed"] == 4
    assert base["failure_reasons"] == {"user_error:transient": 4}
    assert base["tokens_k"]["mean"] == 1.0 and base["turns"]["mean"] == 2.0
    assert base["satisfied"]["mean"] == 100.0 and base["score_unscored"] == 0
    tokens = next(d for d in summary["paired"] if d["figure"] == "tokens_k")
    assert tokens["n"] == 4 and tokens["mean"] == 0.0  # only the items both systems finished
    table = table_markdown({"accuracy": summary}, ["base", "trained"])
    assert "base: 4 failed conversations left out (user_error:transient x4)" in table


def test_the_latest_record_of_an_item_is_its_result():
    records = [failed("base", "t0", 0), record("base", "t0", 0, 1.0, 3, 500)]
    base = summarise(records, ["base"], resamples=200)["accuracy"]["systems"]["base"]
    assert base["conversations"] == 1 and base["failed"] == 0 and base["score"]["mean"] == 100.0


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
    table = table_markdown(
        summarise(records, ["base", "proactive"], resamples=200), ["base", "proactive"]
    )
    lines = table.splitlines()
    assert lines[0] == (
        "| System | Accuracy (%) | Accuracy: turns | Accuracy: tok (k) | Accuracy: ITR "
        "| Pass rate (%) | Pass rate: turns | Pass rate: tok (k) | Pass rate: ITR |"
    )
    assert lines[2].startswith(
        "| base | 50.0 [50.0, 50.0] | 2.00 [2.00, 2.00] | 2.49 [2.49, 2.49] | -100.0"
    )
    assert lines[3].startswith("| proactive | 100.0") and lines[3].endswith("| - | - | - | - |")
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


def test_eval_where_every_conversation_fails_exits_non_zero_naming_the_cause(
    workdir, capsys, user_without_key
):
    assert main(["eval", "--config", user_without_key]) == 1
    out = capsys.readouterr().out
    assert "all 12 conversations failed" in out and "COLLABRL_TEST_UNSET_KEY" in out
    assert "api.example.invalid" in out
    records = list(read_jsonl(workdir / "runs/scripted/eval/conversations.jsonl"))
    assert all(r["error"] == "user_error:rejected" for r in records)
    assert all("COLLABRL_TEST_UNSET_KEY" in r["error_detail"] for r in records)


def test_eval_rerun_retries_failed_items_unless_told_to_keep_them(
    workdir, capsys, user_without_key
):
    assert main(["eval", "--config", user_without_key]) == 1
    out = workdir / "runs/scripted/eval"
    assert main(["eval", "--config", "configs/scripted.yaml", "--keep-failed"]) == 0
    assert len(list(read_jsonl(out / "conversations.jsonl"))) == 12  # nothing retried
    assert main(["eval", "--config", "configs/scripted.yaml"]) == 0  # the cause is fixed
    records = list(read_jsonl(out / "conversations.jsonl"))
    assert len(records) == 24 and not any(r["error"] for r in records[12:])
    summary = json.loads((out / "summary.json").read_text())
    base = summary["accuracy"]["systems"]["base"]
    assert base["failed"] == 0 and base["conversations"] == 2  # math-apples x 2 seeds


def asking(system, task, first_reply, score, group=None):
    """A clarify-chat record: its first assistant reply, task success and eval group."""
    messages = [
        {"role": "user", "content": "Write a note."},
        {"role": "assistant", "content": first_reply},
    ]
    return {
        **record(system, task, 0, score, None, 100, metric="detail_success"),
        "messages": messages,
        "group": group,
    }


def test_first_replies_that_ask_and_complete_requests_are_reported_apart():
    records = [
        asking("base", "t0", "Here is a note.", 0.0),
        asking("base", "t1", "Who is it for?", 1.0),
        asking("trained", "t0", "Who is it for?", 1.0),
        asking("trained", "t1", "Who?", 1.0),
        asking("base", "c0", "Here it is.", 1.0, "complete requests"),
        asking("trained", "c0", "Who?", 1.0, "complete requests"),
    ]
    summary = summarise(records, ["base", "trained"], resamples=200)
    assert set(summary) == {"detail_success", "detail_success / complete requests"}
    needs = summary["detail_success"]["systems"]
    assert (
        needs["base"]["asks_first"]["mean"] == 50.0
        and needs["trained"]["asks_first"]["mean"] == 100.0
    )
    complete = summary["detail_success / complete requests"]["systems"]
    assert complete["base"]["asks_first"]["mean"] == 0.0 and complete["trained"]["score"]["n"] == 1
    table = table_markdown(summary, ["base", "trained"])
    header = table.splitlines()[0]
    assert (
        "Task success (%)" in header
        and "Task success (complete requests): asks first (%)" in header
    )
    assert "ITR" not in header  # no system has a grade: the column is left out
    assert "trained vs base, Task success asks_first: +50.00" in table
