"""``collabrl demo``: every stage runs from the shipped config, and bad setups fail early and clearly.

The end-to-end test swaps SmolLM2 for a tiny random model (trained and served with its adapter)
and scripted user/judge/data-policy roles, so it runs in seconds; CI runs the real thing with
``make demo DEMO_SIZE=ci``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collabrl.cli import main
from collabrl.config import load_config
from collabrl.testing.tiny_model import save_tiny_chat_model


def tiny_overrides(model: Path) -> list[str]:
    long_reply = "Here is a long general answer " + "with many words " * 12
    return [
        "roles.policy={kind: scripted, replies: ['What is it for, and who will read it?', "
        f"'{long_reply}']}}",
        f"roles.trained={{kind: hf_local, model: {model}, adapter: runs/demo/train/final, "
        "dtype: float32, generation: {max_tokens: 16}}",
        "roles.user={kind: scripted, replies: ['it is for my team, go on']}",
        'roles.judge={kind: scripted, replies: ["It asked what mattered.\\nGRADE $call_id: 3"]}',
        # the scripted judge grades interactivity; it cannot extract answers or documents
        "reward.metrics=[{name: interactivity}, {name: token_efficiency}]",
        "reward.window=0",  # scripted futures would repeat both replies: no MR gap to learn from
        f"train.model={model}", "train.dtype=float32", "train.lora.r=4",
        "train.max_length=512", "train.dpo.max_prompt_length=384",
    ]


@pytest.mark.slow
def test_demo_runs_every_stage_and_evaluates_the_trained_adapter(workdir, capsys):
    model = save_tiny_chat_model(workdir / "tiny")
    assert main(["demo", "--config", "configs/demo.yaml", "--size", "ci",
                 *tiny_overrides(model)]) == 0
    out = capsys.readouterr().out
    demo = workdir / "runs" / "demo"
    assert (demo / "export" / "dpo_train.jsonl").read_text().strip()
    assert (demo / "train" / "final" / "adapter_config.json").is_file()
    summary = json.loads((demo / "eval" / "summary.json").read_text())
    assert set().union(*(group["systems"] for group in summary.values())) == {
        "base", "trained", "proactive"}
    records = [json.loads(line) for line in (demo / "eval" / "conversations.jsonl").open()]
    trained = [r for r in records if r["system"] == "trained"]
    assert trained and all(r["error"] is None and r["assistant_tokens"] > 0 for r in trained)
    assert (demo / "report.html").stat().st_size > 1000
    for shown in ("Time per stage", "Model usage, all stages", "report.html"):
        assert shown in out, shown


def test_unknown_size_names_the_defined_ones(workdir, capsys):
    assert main(["demo", "--config", "configs/demo.yaml", "--size", "huge"]) == 2
    out = capsys.readouterr().out
    assert "demo.sizes has no such entry" in out and "ci" in out and "full" in out


def test_demo_refuses_a_config_whose_eval_ignores_the_trained_adapter(workdir, capsys):
    assert main(["demo", "--config", "configs/demo.yaml", "train.output_dir=runs/elsewhere"]) == 2
    assert "no eval system uses the adapter" in capsys.readouterr().out


def test_sizes_are_valid_overrides_of_the_shipped_config():
    config = load_config("configs/demo.yaml")
    for name, overrides in config.demo.sizes.items():
        sized = load_config("configs/demo.yaml", overrides)
        assert sized.eval.systems == config.eval.systems, name


def test_the_small_model_warning_names_its_roles_and_only_then():
    from collabrl.cli.demo import honesty_note

    note = honesty_note(load_config("configs/demo.yaml"))
    assert note is not None and "judge, policy, trained, user" in note
    assert honesty_note(load_config("configs/demo-real.yaml")) is None
