"""Report data without a browser: run detection, Table 1 cells, counts, plot series, escaping."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from collabrl.cli import main
from collabrl.report.build import embed_json, render_html, report_data
from collabrl.report.data import ReportError, load_run, run_kind
from collabrl.report.series import histogram, mean_interval, means_by_x

from .conftest import INJECTION, read_lines


def test_run_kind_from_the_files(scripted_runs, tmp_path):
    assert run_kind(scripted_runs["eval"]) == "eval"
    assert run_kind(scripted_runs["generate"]) == "generate"
    with pytest.raises(ReportError, match="not a run folder"):
        run_kind(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "conversations.jsonl").write_text('{"conversation_id": "a"}\n')
    with pytest.raises(ReportError):  # generate's conversations have no "system"
        run_kind(tmp_path)
    with pytest.raises(ReportError, match="no such folder"):
        load_run(tmp_path / "missing")


def test_eval_table_is_summary_json(scripted_runs):
    run = load_run(scripted_runs["eval"])
    summary = json.loads((scripted_runs["eval"] / "summary.json").read_text())
    assert run["kind"] == "eval" and run["systems"] == ["base", "proactive"]
    assert [g["key"] for g in run["table"]["groups"]] == list(summary)
    figures = [c["figure"] for c in run["table"]["columns"]]
    for row in run["table"]["rows"]:
        cells = iter(row["cells"])
        for group in summary:
            for figure in figures:
                assert next(cells)["estimate"] == summary[group]["systems"][row["system"]][figure]
    assert len(run["paired"]) == sum(len(g["paired"]) for g in summary.values())
    assert all(d["within_noise"] in (True, False) for d in run["paired"])


def test_eval_counts_plots_and_conversations(scripted_runs):
    records = read_lines(scripted_runs["eval"] / "conversations.jsonl")
    run = load_run(scripted_runs["eval"])
    assert run["counts"]["conversations"] == len(records) == len(run["conversations"])
    assert run["counts"]["satisfied"] == sum(r["satisfied"] for r in records)
    first = run["conversations"][0]
    assert (first["task"], first["system"], first["messages"]) == (
        records[0]["task_id"],
        records[0]["system"],
        records[0]["messages"],
    )
    turns = run["plots"]["turns"]
    assert sum(sum(s["counts"]) for s in turns["series"]) == len(records)
    assert run["figures"] and all(
        b["low"] <= b["mean"] <= b["high"] for f in run["figures"] for b in f["bars"]
    )


def test_generate_counts_and_reward_series(scripted_runs):
    turns = read_lines(scripted_runs["generate"] / "turns.jsonl")
    conversations = read_lines(scripted_runs["generate"] / "conversations.jsonl")
    run = load_run(scripted_runs["generate"])
    counts = run["counts"]
    assert counts["turns"] == len(turns)
    assert counts["ok"] == sum(c["status"] == "ok" for c in conversations)
    assert counts["candidates"] == sum(len(t["candidates"]) for t in turns)
    assert counts["unfinished"] == 0
    mr = {s["name"]: s for s in run["plots"]["mr"]["series"]}
    assert mr["chosen"]["total"] == sum(t["chosen"] is not None for t in turns)
    assert mr["rejected"]["total"] == counts["candidates"] - mr["chosen"]["total"]
    assert run["plots"]["mr_by_turn"]["x"] == sorted({t["turn"] for t in turns})


def test_generate_turns_sit_on_their_assistant_message(scripted_runs):
    run = load_run(scripted_runs["generate"])
    raw = read_lines(scripted_runs["generate"] / "turns.jsonl")
    for conversation in run["conversations"]:
        assert conversation["steps"]
        for step in conversation["steps"]:
            chosen = step["candidates"][step["chosen"]]
            assert conversation["messages"][step["at"]] == {
                "role": "assistant",
                "content": chosen["text"],
            }
    future = raw[0]["candidates"][0]["futures"][0]
    compact = next(
        c for c in run["conversations"] if c["conversation_id"] == raw[0]["conversation_id"]
    )
    added = compact["steps"][0]["candidates"][0]["futures"][0]["added"]
    start = future["future"]["start"]
    assert added == future["future"]["conversation"]["messages"][start:]


def test_turns_without_conversation_record_are_unfinished(injected_runs):
    run = load_run(injected_runs["generate"])
    pending = [c for c in run["conversations"] if c["status"] == "unfinished"]
    assert [c["conversation_id"] for c in pending] == ["injected-conv"]
    assert run["counts"]["unfinished"] == 1
    assert pending[0]["messages"][-1]["role"] == "assistant"


def test_runs_without_futures_keep_the_candidates(scripted_runs, tmp_path):
    folder = tmp_path / "generate"
    folder.mkdir()
    turns = read_lines(scripted_runs["generate"] / "turns.jsonl")
    lines = [
        json.dumps({**t, "candidates": [{**c, "futures": None} for c in t["candidates"]]})
        for t in turns
    ]
    (folder / "turns.jsonl").write_text("\n".join(lines) + "\n")
    run = load_run(folder)
    candidates = [
        c for conv in run["conversations"] for s in conv["steps"] for c in s["candidates"]
    ]
    assert len(candidates) == run["counts"]["candidates"]
    assert all(c["futures"] is None and c["mr"] is not None for c in candidates)
    assert run["counts"]["unfinished"] == len(run["conversations"])


def test_histogram_shares_edges_and_counts_everything():
    unit = histogram({"a": [1, 2, 2, 3], "b": [3, 3]})
    assert unit["edges"] == [0.5, 1.5, 2.5, 3.5]
    assert [s["counts"] for s in unit["series"]] == [[1, 2, 1], [0, 0, 2]]
    spread = histogram({"x": [0.0, 0.25, 0.5, 1.0]}, bins=4)
    assert spread["edges"][0] == 0.0 and spread["edges"][-1] == 1.0
    assert spread["series"][0]["counts"] == [1, 1, 1, 1]
    assert histogram({"flat": [0.7, 0.7 + 1e-16]})["series"][0]["counts"] == [2]
    assert histogram({"a": [], "b": []}) is None


def test_means_by_x_leaves_out_unscored():
    spec = means_by_x({"chosen": [(0, 1.0), (0, 3.0), (1, None)], "rejected": [(1, 0.5)]})
    assert spec["x"] == [0, 1]
    chosen, rejected = spec["series"]
    assert chosen["points"][0]["mean"] == 2.0 and chosen["points"][1] is None
    assert rejected["points"] == [None, {"mean": 0.5, "low": 0.5, "high": 0.5, "n": 1}]
    assert means_by_x({"a": [(0, None)]}) is None
    assert mean_interval([]) is None


def test_embedded_json_cannot_end_the_script_element():
    data = {"reply": f"</script><!-- {INJECTION} & \u2028"}
    text = embed_json(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == data


def test_page_is_self_contained_and_escaped(injected_runs):
    html = render_html(report_data([injected_runs["generate"], injected_runs["eval"]]))
    assert html.count("</script>") == 2  # the data element and the scripts, nothing from data
    assert "{{" not in html.split('id="report-data">')[0]  # every placeholder filled
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    data = html.split('id="report-data">')[1].split("</script>")[0]
    assert json.loads(data)["runs"][1]["conversations"][-1]["task"] == "injected-task"


def test_cli_writes_the_report(scripted_runs, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert (
        main(["report", str(scripted_runs["generate"]), str(scripted_runs["eval"]), "-o", str(out)])
        == 0
    )
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "x.html")]) == 2
    assert "not a run folder" in capsys.readouterr().out


def test_the_report_carries_the_manifest_sandbox(scripted_runs, tmp_path):
    folder = tmp_path / "generate"
    shutil.copytree(scripted_runs["generate"], folder)
    assert load_run(folder)["sandbox"] is None  # the scripted config runs no code
    manifest = json.loads((folder / "manifest.json").read_text())
    weak = {"level": "process", "weak_isolation": True, "weaknesses": ["runs as root"]}
    (folder / "manifest.json").write_text(json.dumps({**manifest, "sandbox": weak}))
    assert load_run(folder)["sandbox"] == weak


def test_the_headline_is_task_success_of_the_first_eval_run(scripted_runs):
    """The page opens on summary.json's task success per system and the paired differences."""
    data = report_data([scripted_runs["generate"], scripted_runs["eval"]])
    summary = json.loads((scripted_runs["eval"] / "summary.json").read_text())
    headline = data["headline"]
    assert headline["run"] == data["runs"][1]["name"]
    assert len(headline["charts"]) == len(summary)
    for chart, body in zip(headline["charts"], summary.values()):
        assert chart["bars"] == [
            {"name": s, **body["systems"][s]["score"]} for s in ("base", "proactive")
        ]
        assert chart["base"] == "base"
        assert chart["differences"] == [d for d in body["paired"] if d["figure"] == "score"]
    assert report_data([scripted_runs["generate"]])["headline"] is None
