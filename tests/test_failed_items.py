"""Failed items are data: counted with the message that names their cause, retried by a rerun
unless ``--keep-failed``, read through their latest record, and a run where everything failed
exits non-zero with that message."""

import json

from collabrl.cli import main
from collabrl.records import read_jsonl
from collabrl.report.data import load_run


def test_generate_where_every_conversation_fails_names_the_cause(workdir, capsys, user_without_key):
    assert main(["generate", "--config", user_without_key]) == 1
    out = capsys.readouterr().out
    assert "all 3 conversations failed" in out
    assert "COLLABRL_TEST_UNSET_KEY" in out and "api.example.invalid" in out
    folder = workdir / "runs/scripted/generate"
    records = list(read_jsonl(folder / "conversations.jsonl"))
    assert {r["reason"] for r in records} == {"user_error:rejected"}
    assert all("COLLABRL_TEST_UNSET_KEY" in r["detail"] for r in records)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["failures"]["reasons"] == {"user_error:rejected": 3}
    assert manifest["outcomes"] == {"failed": 3}


def test_generate_rerun_retries_failed_conversations_and_export_reads_the_latest(
    workdir, capsys, user_without_key
):
    main(["generate", "--config", user_without_key])
    folder = workdir / "runs/scripted/generate"
    assert main(["generate", "--config", "configs/scripted.yaml", "--keep-failed"]) == 0
    assert len(list(read_jsonl(folder / "conversations.jsonl"))) == 3  # kept, not retried
    assert main(["generate", "--config", "configs/scripted.yaml"]) == 0
    records = list(read_jsonl(folder / "conversations.jsonl"))
    assert [r["status"] for r in records] == ["failed"] * 3 + ["ok"] * 3
    counts = load_run(folder)["counts"]
    assert counts["ok"] == 3 and counts["failed"] == 0 and counts["conversations"] == 3
    assert main(["export", "--config", "configs/scripted.yaml"]) == 0
    manifest = json.loads((workdir / "runs/scripted/export/manifest.json").read_text())
    assert manifest["report"]["sft"] == {"kept": 3}  # the failed records are superseded
    assert main(["generate", "--config", "configs/scripted.yaml"]) == 0
    assert len(list(read_jsonl(folder / "conversations.jsonl"))) == 6  # all finished now


def test_simulate_where_everything_fails_then_a_rerun_retries(workdir, capsys, user_without_key):
    assert main(["simulate", "--config", user_without_key]) == 1
    out = capsys.readouterr().out
    assert "all 3 conversations failed" in out and "COLLABRL_TEST_UNSET_KEY" in out
    output = workdir / "runs/scripted/conversations.jsonl"
    assert main(["simulate", "--config", "configs/scripted.yaml", "--keep-failed"]) == 0
    assert "0 conversations simulated (3 already done)" in capsys.readouterr().out
    assert main(["simulate", "--config", "configs/scripted.yaml"]) == 0
    rows = list(read_jsonl(output))
    assert len(rows) == 6 and all(r["ended"] == "user_terminated" for r in rows[3:])
