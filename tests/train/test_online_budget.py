"""The online recipes honour ``budget``: on the tiny model with scripted roles (deterministic
spend), a request cap stops online DPO, PPO and GRPO between rounds/updates/steps (the projection
rule) or inside one (a cap reached), keeps the last complete checkpoint loadable, records the
stop in run_info.json, and a rerun with a larger cap resumes and finishes. Spend per unit here:
online DPO 39 requests a round, PPO 28 an update, GRPO 12 a step."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from collabrl.budget import EXIT_BUDGET, Budget
from collabrl.cli import main
from collabrl.testing.online import online_config, ppo_config
from collabrl.train import grpo, online_dpo, ppo
from collabrl.train.checkpoint import find_resumable, verify
from collabrl.train.common import BudgetStop, verify_checkpoint


def capped(config, requests: int):
    return config.model_copy(
        update={"budget": config.budget.model_validate({"requests": requests})}
    )


def run_info(config) -> dict:
    return json.loads((config.train.output_dir / "run_info.json").read_text())


def names(config, pattern: str) -> list[str]:
    return sorted(p.name for p in config.train.output_dir.glob(pattern))


def assert_stopped(config, requests: int, last: str | None) -> dict:
    info = run_info(config)
    assert info["stopped"] == "budget" and info["budget"] == {"requests": requests, "roles": {}}
    assert info["spent"]["requests"] >= 1 and set(info["spent"]["roles"]) == {
        "policy",
        "user",
        "judge",
    }
    if last is None:
        assert info["last_checkpoint"] is None
    else:
        assert info["last_checkpoint"].endswith(last)
    assert not (config.train.output_dir / "final").exists()
    return info


def test_online_dpo_stops_between_and_inside_rounds_then_resumes(run, tiny_model):
    inside = capped(online_config(run, tiny_model, output_dir=str(run / "inside")), 20)
    with pytest.raises(BudgetStop, match="0 rounds finished.*no checkpoint was written"):
        online_dpo.train(inside)
    assert_stopped(inside, 20, None)
    assert names(inside, "round-*") == [] and names(inside, ".round-*") == []

    config = capped(online_config(run, tiny_model), 60)  # round 1: 39; two would be 78
    with pytest.raises(BudgetStop, match="requests=60 would be exceeded.*resume continues from"):
        online_dpo.train(config)
    info = assert_stopped(config, 60, "round-1")
    assert info["spent"]["requests"] == 39 and [r["round"] for r in info["rounds"]] == [1]
    assert names(config, "round-*") == ["round-1"]
    assert find_resumable(config.train, "round").name == "round-1"  # complete, resumable
    assert load_file(config.train.output_dir / "round-1" / "adapter_model.safetensors")

    online_dpo.train(capped(config, 1000))
    info = run_info(config)
    assert info["stopped"] is None and info["resumed_from"].endswith("round-1")
    assert [r["round"] for r in info["rounds"]] == [1, 2] and info["spent"]["requests"] == 39


def test_ppo_checkpoints_the_last_update_at_the_cap_and_resumes_like_a_straight_run(
    run, tiny_model
):
    inside = capped(ppo_config(run, tiny_model, "inside", save_steps=100), 10)
    with pytest.raises(BudgetStop, match="requests=10 reached"):
        ppo.train(inside)
    assert_stopped(inside, 10, None)
    assert names(inside, "*checkpoint-*") == []

    config = capped(
        ppo_config(run, tiny_model, "out", save_steps=100), 40
    )  # update 1: 28; two would be 56
    with pytest.raises(BudgetStop, match="1 updates finished"):
        ppo.train(config)
    info = assert_stopped(config, 40, "checkpoint-1")
    assert info["updates"] == 1 and info["spent"]["requests"] == 28
    assert names(config, "*checkpoint-*") == ["checkpoint-1"]  # written at the stop
    verify(config.train.output_dir / "checkpoint-1", ppo.CHECKPOINT_FILES)

    resumed = load_file(ppo.train(capped(config, 1000)) / "adapter_model.safetensors")
    assert run_info(config)["resumed_from"].endswith("checkpoint-1")
    straight = load_file(
        ppo.train(ppo_config(run, tiny_model, "straight", save_steps=100))
        / "adapter_model.safetensors"
    )
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6)


def grpo_config(run, tiny_model, output: str, requests: int):
    config = online_config(
        run,
        tiny_model,
        output_dir=str(run / output),
        max_steps=3,
        save_steps=100,
        per_device_batch_size=2,
        lora={"r": 4, "alpha": 8, "dropout": 0.1},  # dropout: resuming needs the RNG states
    )
    return capped(config, requests)


def test_grpo_stops_at_the_end_of_the_step_with_a_checkpoint_and_resumes(run, tiny_model):
    inside = grpo_config(run, tiny_model, "inside", 5)  # reached inside step 1: dropped whole
    with pytest.raises(BudgetStop, match="requests=5 reached.*0 steps finished"):
        grpo.train(inside)
    assert assert_stopped(inside, 5, None)["steps"] == 0
    assert names(inside, "checkpoint-*") == []

    config = grpo_config(run, tiny_model, "out", 20)  # step 1: 12; two would be 24
    with pytest.raises(BudgetStop, match="would be exceeded"):
        grpo.train(config)
    info = assert_stopped(config, 20, "checkpoint-1")
    assert info["steps"] == 1 and info["spent"]["requests"] == 12
    verify_checkpoint(config.train.output_dir / "checkpoint-1")

    grpo.train(grpo_config(run, tiny_model, "out", 1000))
    info = run_info(config)
    assert info["stopped"] is None and info["steps"] == 3
    assert info["resumed_from"].endswith("checkpoint-1")


def test_a_grpo_step_in_which_the_cap_is_reached_is_dropped_and_resumes_exactly(
    run, tiny_model, monkeypatch
):
    straight = grpo.train(grpo_config(run, tiny_model, "straight", 1000))
    # no projection: step 2 starts and reaches the cap (20) half-way through its 12 requests
    monkeypatch.setattr(Budget, "refusal", lambda self, in_flight: self.reached())
    dropped = grpo_config(run, tiny_model, "dropped", 20)
    with pytest.raises(BudgetStop, match="requests=20 reached.*1 steps finished"):
        grpo.train(dropped)
    info = assert_stopped(dropped, 20, "checkpoint-1")  # written after the drop (save_steps 100)
    assert info["steps"] == 1 and names(dropped, "checkpoint-*") == ["checkpoint-1"]
    verify_checkpoint(dropped.train.output_dir / "checkpoint-1")
    monkeypatch.undo()
    resumed = grpo.train(grpo_config(run, tiny_model, "dropped", 1000))
    assert run_info(dropped)["resumed_from"].endswith("checkpoint-1")
    expected = load_file(straight / "adapter_model.safetensors")
    got = load_file(resumed / "adapter_model.safetensors")
    for name in expected:  # nothing of the dropped step was applied; the RNG states were kept
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_collabrl_train_exits_with_the_budget_status_and_one_line(run, tiny_model, capsys):
    config = online_config(run, tiny_model)
    path = run / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    assert main(["train", "online-dpo", "-c", str(path), "budget.requests=60"]) == EXIT_BUDGET
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("error:")]
    assert "stopped on the budget" in line and "spent" in line
    assert "Rerun with a larger budget to continue: resume continues from" in line
    assert main(["train", "online-dpo", "-c", str(path), "budget.requests=1000"]) == 0
