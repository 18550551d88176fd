"""``collabrl demo``: every stage runs from the shipped config, and bad setups fail early and clearly.

The end-to-end test swaps SmolLM2 for a tiny random model (trained and served with its adapter)
and scripted user/judge/data-policy roles, so it runs in seconds; CI runs the real thing with
``make demo DEMO_SIZE=ci``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from collabrl.cli import main
from collabrl.config import load_config
from collabrl.testing.tiny_model import save_tiny_chat_model


def tiny_overrides(model: Path) -> list[str]:
    long_reply = "Here is a long general answer " + "with many words " * 12
    return [
        f"roles.policy={{kind: scripted, replies: ['Who is it for?', '{long_reply}']}}",
        "roles.base={kind: scripted, replies: ['Who is it for?']}",
        f"roles.trained={{kind: hf_local, model: {model}, adapter: runs/demo/train/final, "
        "dtype: float32, generation: {max_tokens: 16}}",
        # scripted futures would not use the detail: the shorter reply wins on tokens alone
        "reward.metrics=[{name: turn_cost}, {name: token_efficiency, options: {lam: 1.0e-3}}]",
        "reward.window=0",
        f"train.model={model}",
        "train.dtype=float32",
        "train.lora.r=4",
    ]


@pytest.mark.slow
def test_demo_runs_every_stage_and_evaluates_the_trained_adapter(workdir):
    # a process of its own, as a user runs it: libraries are imported in the demo's order
    model = save_tiny_chat_model(workdir / "tiny")
    command = ["demo", "--config", "configs/demo.yaml", "--size", "ci", *tiny_overrides(model)]
    run = subprocess.run(
        [sys.executable, "-m", "collabrl", *command], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    demo = workdir / "runs" / "demo"
    assert (demo / "export" / "dpo_train.jsonl").read_text().strip()
    assert (demo / "train" / "final" / "adapter_config.json").is_file()
    summary = json.loads((demo / "eval" / "summary.json").read_text())
    assert set().union(*(group["systems"] for group in summary.values())) == {
        "base",
        "trained",
        "proactive",
    }
    records = [json.loads(line) for line in (demo / "eval" / "conversations.jsonl").open()]
    trained = [r for r in records if r["system"] == "trained"]
    assert trained and all(r["error"] is None and r["assistant_tokens"] > 0 for r in trained)
    assert (demo / "report.html").stat().st_size > 1000
    for shown in (
        "Time per stage",
        "Model usage, all stages",
        "report.html",
        "Paired differences vs base",
        "trained - base",
        "train: ",
        "collabrl.log",
    ):
        assert shown in out, shown
    assert "{'loss'" not in out and "Warning" not in out  # those are in the log file
    assert "Tokenizing" not in run.stderr and "%|" not in run.stderr  # no library progress bars
    log = (demo / "collabrl.log").read_text()
    assert "---- collabrl demo ----" in log and '"loss":' in log


def test_unknown_size_names_the_defined_ones(workdir, capsys):
    assert main(["demo", "--config", "configs/demo.yaml", "--size", "huge"]) == 2
    out = capsys.readouterr().out
    assert "demo.sizes has no such entry" in out and "ci" in out and "full" in out


def test_demo_refuses_a_config_whose_eval_ignores_the_trained_adapter(workdir, capsys):
    assert main(["demo", "--config", "configs/demo.yaml", "train.output_dir=runs/elsewhere"]) == 2
    assert "no eval system uses the adapter" in capsys.readouterr().out


@pytest.mark.parametrize("path", ["configs/demo.yaml", "configs/demo-llm.yaml"])
def test_sizes_are_valid_overrides_of_the_shipped_config(path):
    config = load_config(path)
    assert set(config.demo.sizes) == {"full", "ci"}
    for name, overrides in config.demo.sizes.items():
        sized = load_config(path, overrides)
        assert sized.eval.systems == config.eval.systems, name


def test_the_demo_evaluates_held_out_and_complete_requests_with_the_rule_user():
    from collabrl.tasks.registry import load_tasks

    config = load_config("configs/demo.yaml")
    assert config.user.kind == "rule" and "user" not in config.roles
    train = load_tasks(config.generate.tasks, "generate.tasks")
    held_out = load_tasks(config.eval.tasks, "eval.tasks")
    assert not {t.metadata["template"] for t in train} & {t.metadata["template"] for t in held_out}
    assert sum(not t.metadata["needs_clarification"] for t in held_out) >= 15
    assert [m.name for m in config.reward.metrics] == ["detail_success", "turn_cost"]


def test_the_small_model_warning_names_its_roles_and_only_then():
    from collabrl.cli.demo import honesty_note

    note = honesty_note(load_config("configs/demo-llm.yaml"))
    assert note is not None and "plays judge, user in this run" in note
    assert honesty_note(load_config("configs/demo.yaml")) is None  # the rule user, no judge
    assert honesty_note(load_config("configs/demo-real.yaml")) is None
