"""GRPO against MR on the tiny model: it trains, unscored rewards are left out (not zeros), RLOO
works, a NaN loss stops it, an incomplete checkpoint is refused, and completions cut by the
length limit are left out of the loss by default."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from collabrl.config import Config
from collabrl.testing.online import online_config, write_generate_run
from collabrl.train import grpo
from collabrl.train.common import CheckpointError, NonFiniteLossError, load_policy
from collabrl.train.live_reward import LiveReward


@pytest.fixture
def run(tmp_path):
    write_generate_run(tmp_path, conversations=3, turns=2)
    return tmp_path


def adapter_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def log_history(output_dir) -> list[dict]:
    last = max(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())["log_history"]


def test_grpo_trains_the_adapter_with_finite_losses(run, tiny_model, monkeypatch):
    config = online_config(run, tiny_model, max_steps=2)
    units, reseed = [], LiveReward.reseed

    def spy(self, unit):
        units.append(unit)
        return reseed(self, unit)

    monkeypatch.setattr(LiveReward, "reseed", spy)
    final = grpo.train(config)
    assert units == [0, 1]  # the futures of each step are seeded by (train.seed, step)
    weights = adapter_weights(final)
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # LoRA B starts at zero
    assert not any("ref" in name.split(".") for name in weights)  # only the trained adapter
    history = [h for h in log_history(config.train.output_dir) if "loss" in h]
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)
    assert all(math.isfinite(h["rewards/multiturn_reward/mean"]) for h in history)
    info = json.loads((config.train.output_dir / "run_info.json").read_text())
    assert info["trainer"] == "GRPOTrainer" and info["steps"] == 2
    assert info["scored_replies"] == 8 and info["unscored_replies"] == 0
    assert info["usage"]["policy"]["calls"] == 8 * config.reward.samples  # future turns


def test_resuming_repeats_the_straight_run_and_incomplete_checkpoints_are_refused(run, tiny_model):
    config = online_config(run, tiny_model, max_steps=2, lora={"r": 4, "alpha": 8, "dropout": 0.1})
    straight = adapter_weights(grpo.train(config))
    shutil.rmtree(config.train.output_dir / "checkpoint-2")
    shutil.rmtree(config.train.output_dir / "final")
    resumed = adapter_weights(grpo.train(config))
    info = json.loads((config.train.output_dir / "run_info.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-1")
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6)
    (config.train.output_dir / "checkpoint-2" / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        grpo.train(config)


def unreadable_every_third_call(run, tiny_model, **train) -> Config:
    data = online_config(run, tiny_model, **train).model_dump(mode="json")
    data["reward"]["samples"] = 1
    data["roles"]["judge"]["replies"] = [
        "GRADE $call_id: 3",
        "GRADE $call_id: 3",
        "no grade at all",
    ]
    return Config.model_validate(data)


def test_unscored_mr_is_none_and_left_out_of_the_group_baseline(run, tiny_model, monkeypatch):
    from trl import GRPOTrainer

    returned, batches = [], []
    make_reward = grpo.multiturn_reward_function

    def spy_reward(scorer, prefixes):
        reward = make_reward(scorer, prefixes)

        def multiturn_reward(*args, **kwargs):
            returned.append(reward(*args, **kwargs))
            return returned[-1]

        return multiturn_reward

    original = GRPOTrainer._generate_and_score_completions

    def spy_batch(self, inputs):
        batches.append(original(self, inputs))
        return batches[-1]

    monkeypatch.setattr(grpo, "multiturn_reward_function", spy_reward)
    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", spy_batch)
    config = unreadable_every_third_call(
        run, tiny_model, max_steps=2, per_device_batch_size=8, grpo={"candidates": 4}
    )
    grpo.train(config)
    assert len(returned) == len(batches) == 2
    mixed = 0
    for rewards, batch in zip(returned, batches):
        assert any(r is None for r in rewards) and any(r is not None for r in rewards)
        for start in range(0, len(rewards), 4):
            group = rewards[start : start + 4]
            advantages = batch["advantages"][start : start + 4].tolist()
            scored = [r for r in group if r is not None]
            assert all(a == 0 for r, a in zip(group, advantages) if r is None)
            if len(scored) >= 2 and len(scored) < 4:
                mixed += 1
                mean = sum(scored) / len(scored)
                std = torch.tensor(scored).std().item()  # over the scored replies only
                expected = [(r - mean) / (std + 1e-4) for r in group if r is not None]
                got = [a for r, a in zip(group, advantages) if r is not None]
                assert got == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert mixed > 0  # some group had both kinds, and its baseline ignored the unscored ones


def test_rloo_loss_type_uses_the_rloo_trainer(run, tiny_model):
    config = online_config(run, tiny_model, max_steps=1, grpo={"loss_type": "rloo"})
    grpo.train(config)
    info = json.loads((config.train.output_dir / "run_info.json").read_text())
    assert info["trainer"] == "RLOOTrainer" and info["steps"] == 1


def test_a_nan_loss_stops_training_before_the_update(run, tiny_model, monkeypatch):
    from trl import GRPOTrainer

    def nan_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        params = [p for p in model.parameters() if p.requires_grad]
        return params[0].sum() * float("nan")

    monkeypatch.setattr(GRPOTrainer, "compute_loss", nan_loss)
    config = online_config(run, tiny_model, max_steps=2)
    with pytest.raises(NonFiniteLossError, match="step 1"):
        grpo.train(config)
    assert not list(config.train.output_dir.glob("checkpoint-*"))


def with_cut_replies(run, tiny_model, loss_type: str, **cut: str) -> Config:
    """The test config with ``grpo.cut_replies`` back to its default, or as ``cut`` sets it."""
    data = online_config(run, tiny_model, grpo={"loss_type": loss_type}).model_dump(mode="json")
    del data["train"]["grpo"]["cut_replies"]  # the test config's "trained"
    data["train"]["grpo"] |= cut
    return Config.model_validate(data)


@pytest.mark.parametrize("loss_type", ["grpo", "rloo"])
@pytest.mark.parametrize(("cut", "masked"), [({}, True), ({"cut_replies": "trained"}, False)])
def test_cut_completions_are_masked_from_the_loss_unless_trained(
    run, tiny_model, loss_type, cut, masked
):
    from datasets import Dataset

    config = with_cut_replies(run, tiny_model, loss_type, **cut)
    model, tokenizer = load_policy(config.train)
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "hi"}], "prefix_index": 0}])
    trainer = grpo.build_trainer(config, model, tokenizer, rows, lambda **_: [])
    assert trainer.args.mask_truncated_completions is masked
    assert trainer.mask_truncated_completions is masked  # what TRL's loss reads
