"""`collabrl eval` as a user runs it: a rerun says what was already done and runs nothing twice."""

from collabrl.cli import main
from collabrl.records import read_jsonl


def test_a_rerun_reports_the_conversations_already_done(workdir, capsys):
    assert main(["eval", "--config", "configs/scripted.yaml"]) == 0
    first = capsys.readouterr().out
    records = list(read_jsonl(workdir / "runs/scripted/eval/conversations.jsonl"))
    total = len(records)
    assert total > 1 and f"{total} conversations evaluated (0 already done)" in first
    assert main(["eval", "--config", "configs/scripted.yaml"]) == 0
    again = capsys.readouterr().out
    assert f"0 conversations evaluated ({total} already done)" in again
    assert f"{total}/{total}" in again and f"0/{total}" not in again  # progress starts at done
    assert len(list(read_jsonl(workdir / "runs/scripted/eval/conversations.jsonl"))) == total
