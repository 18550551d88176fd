"""`collabrl generate` as a user runs it: a rerun says what was already done."""

from collabrl.cli import main
from collabrl.records import read_jsonl


def test_a_rerun_reports_the_conversations_already_done(workdir, capsys):
    assert main(["generate", "--config", "configs/scripted.yaml"]) == 0
    first = capsys.readouterr().out
    assert "3 conversations built (0 already done)" in first
    assert main(["generate", "--config", "configs/scripted.yaml"]) == 0
    again = capsys.readouterr().out
    assert "0 conversations built (3 already done)" in again
    assert "3/3" in again and "0/3" not in again  # the progress starts at what is done
    assert "outcomes: {}" not in again
    records = list(read_jsonl(workdir / "runs/scripted/generate/conversations.jsonl"))
    assert len(records) == 3  # nothing built twice


def test_a_rerun_counts_failed_conversations_as_done_only_when_kept(
    workdir, capsys, user_without_key
):
    assert main(["generate", "--config", user_without_key]) == 1
    capsys.readouterr()
    assert main(["generate", "--config", user_without_key, "--keep-failed"]) == 0
    assert "(3 already done)" in capsys.readouterr().out
    assert main(["generate", "--config", "configs/scripted.yaml"]) == 0  # retried, now fixed
    assert "3 conversations built (0 already done)" in capsys.readouterr().out
