"""The PPO recipe end to end on the tiny random model, with a scripted user and judge.

MR is token efficiency (it varies with the reply) plus a scripted interactivity grade; the live
policy writes the future assistant turns. Every update is seeded, so runs are reproducible on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from collabrl.config import LoraSettings, ScriptedBackendConfig
from collabrl.reward import CandidateReward, MultiturnReward
from collabrl.testing.online import ppo_config
from collabrl.testing.tiny_model import tiny_chat_model
from collabrl.train import ppo
from collabrl.train.checkpoint import STATE_FILE, read_state
from collabrl.train.common import CheckpointError, NonFiniteLossError, lora_config
from collabrl.train.live_reward import derived_seed
from collabrl.train.ppo_math import PPOLosses
from collabrl.train.ppo_rollouts import ScoredReply, collate, encode, update_prefixes
from collabrl.train.prefixes import load_prefixes

LOSSES = ("policy_loss", "value_loss", "clip_fraction", "approx_kl", "kl", "reward_mean")


def history(folder):
    return read_state(folder).extra["history"]


def lora_b(adapter):
    return [v for k, v in adapter.items() if "lora_B" in k]


def hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_two_updates_train_the_adapter_and_the_value_head(run, tiny_model, capsys):
    config = ppo_config(run, tiny_model)
    config.tracking.report_to = ["tensorboard"]
    final = ppo.train(config)
    out = run / "out"
    assert "ppo update 2/2: reward_mean" in capsys.readouterr().out
    assert list((out / "runs").glob("events.out.tfevents.*"))
    assert final == out / "final"
    adapter = load_file(final / "adapter_model.safetensors")
    assert any(b.abs().max() > 0 for b in lora_b(adapter))  # LoRA B starts at zero
    first = load_file(out / "checkpoint-1" / "adapter_model.safetensors")
    assert any(not torch.equal(first[k], adapter[k]) for k in adapter)
    assert load_file(final / ppo.VALUE_HEAD_FILE)["weight"].abs().sum() > 0  # starts at zero
    steps = history(out / "checkpoint-2")
    assert [m["scored"] for m in steps] == [4, 4] and [m["unscored"] for m in steps] == [0, 0]
    assert all(math.isfinite(m[name]) for m in steps for name in LOSSES)
    assert steps[0]["kl"] == 0.0  # a fresh adapter is the reference (the base) until trained
    assert steps[1]["kl"] != 0.0
    # each reward metric's mean per update, and every role's usage (the live policy's too)
    assert all(m["metric/interactivity"] == 1.0 for m in steps)
    assert all(m["metric/token_efficiency"] < 0 for m in steps)
    usage = json.loads((out / "run_info.json").read_text())["usage"]
    assert usage["policy"]["completion_tokens"] > 0 and usage["judge"]["calls"] > 0


def test_unscored_replies_are_left_out_of_the_update_and_counted(run, tiny_model, monkeypatch):
    original = MultiturnReward.score_one
    calls = {"n": 0}

    async def every_other_unscored(self, task, prefix, candidate):
        calls["n"] += 1
        if calls["n"] % 2:
            return CandidateReward(
                reply=candidate, mr=None, metric_means={}, samples=[], stderr=None, unscored=0
            )
        return await original(self, task, prefix, candidate)

    seen = []
    experience = ppo.PPO.experience

    def spy(self, replies, *args):
        seen.append([r.mr for r in replies])
        return experience(self, replies, *args)

    monkeypatch.setattr(MultiturnReward, "score_one", every_other_unscored)
    monkeypatch.setattr(ppo.PPO, "experience", spy)
    ppo.train(ppo_config(run, tiny_model, updates=1))
    [step] = history(run / "out" / "checkpoint-1")
    assert (step["scored"], step["unscored"]) == (2, 2)
    assert step["unscored_reasons"] == {"no_future_sampled": 2}
    assert len(seen) == 1 and len(seen[0]) == 2 and None not in seen[0]


def test_an_update_with_no_scored_reply_changes_nothing(run, tiny_model):
    config = ppo_config(run, tiny_model, updates=1)
    judge = ScriptedBackendConfig(kind="scripted", replies=["I cannot grade this."])
    config = config.model_copy(update={"roles": {**config.roles, "judge": judge}})
    final = ppo.train(config)
    [step] = history(run / "out" / "checkpoint-1")
    assert (step["scored"], step["unscored"]) == (0, 4) and "policy_loss" not in step
    assert step["reward_mean"] is None
    assert all(b.abs().max() == 0 for b in lora_b(load_file(final / "adapter_model.safetensors")))
    assert load_file(final / ppo.VALUE_HEAD_FILE)["weight"].abs().sum() == 0


def test_from_an_init_adapter_the_reference_is_that_adapter(run, tiny_model):
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    sft = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )  # B != 0: not the base
    sft.save_pretrained(run / "sft")
    final = ppo.train(ppo_config(run, tiny_model, updates=1, init_adapter=str(run / "sft")))
    [step] = history(run / "out" / "checkpoint-1")
    assert step["kl"] == 0.0  # the policy starts as the reference: the SFT adapter
    start = load_file(run / "sft" / "adapter_model.safetensors")
    trained = load_file(final / "adapter_model.safetensors")
    assert start.keys() == trained.keys()
    assert any(not torch.equal(start[k], trained[k]) for k in start)


@pytest.mark.slow
def test_resuming_after_one_update_matches_a_straight_run(run, tiny_model):
    # LoRA dropout draws from torch's global RNG: the checkpoint's RNG states must be restored
    straight = ppo.train(ppo_config(run, tiny_model, "straight", dropout=0.3, updates=2))
    ppo.train(ppo_config(run, tiny_model, "resumed", dropout=0.3, updates=1))
    resumed = ppo.train(ppo_config(run, tiny_model, "resumed", dropout=0.3, updates=2))
    info = json.loads((run / "resumed" / "run_info.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-1")
    for name in ("adapter_model.safetensors", ppo.VALUE_HEAD_FILE):
        a, b = load_file(straight / name), load_file(resumed / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    first = history(run / "straight" / "checkpoint-2")
    second = history(run / "resumed" / "checkpoint-2")
    for x, y in zip(first, second, strict=True):
        assert x["scored"] == y["scored"]
        assert [x[k] for k in LOSSES] == pytest.approx([y[k] for k in LOSSES], rel=1e-4, abs=1e-6)


def test_a_checkpoint_with_missing_files_refuses_to_resume(run, tiny_model):
    folder = run / "out" / "checkpoint-3"
    folder.mkdir(parents=True)
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        ppo.VALUE_HEAD_FILE,
        STATE_FILE,
    ):
        (folder / name).write_text("{}")
    with pytest.raises(CheckpointError, match=r"missing optimizer\.pt, rng_state\.pth"):
        ppo.train(ppo_config(run, tiny_model))


def test_a_nan_loss_stops_before_the_step_and_keeps_the_last_checkpoint(
    run, tiny_model, monkeypatch
):
    ppo.train(ppo_config(run, tiny_model, updates=1))
    checkpoint = run / "out" / "checkpoint-1"
    before = hashes(checkpoint)
    real_losses, steps = ppo.ppo_losses, []

    def nan_losses(*args, **kwargs):
        losses = real_losses(*args, **kwargs)
        return PPOLosses(
            losses.policy * float("nan"), losses.value, losses.clip_fraction, losses.approx_kl
        )

    def counting_step(self, *args, **kwargs):
        steps.append(1)

    monkeypatch.setattr(ppo, "ppo_losses", nan_losses)
    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    with pytest.raises(NonFiniteLossError, match="update 2"):
        ppo.train(ppo_config(run, tiny_model, updates=2))
    assert steps == []
    assert hashes(checkpoint) == before
    left = sorted(p.name for p in (run / "out").iterdir() if "checkpoint" in p.name)
    assert left == ["checkpoint-1"]


def test_update_prefixes_pass_over_every_prefix_before_repeating(run, tiny_model):
    prefixes = load_prefixes(ppo_config(run, tiny_model), run / "generate")
    assert len(prefixes) == 6
    first_pass = [*update_prefixes(prefixes, 0, 4, seed=0), *update_prefixes(prefixes, 1, 4, 0)[:2]]
    assert sorted(p.key for p in first_pass) == sorted(p.key for p in prefixes)
    assert update_prefixes(prefixes, 1, 4, seed=0) == update_prefixes(prefixes, 1, 4, seed=0)
    assert derived_seed(0, 1, 0) != derived_seed(0, 1, 1) != derived_seed(0, 2, 1)


def test_forward_gives_each_reply_token_its_unpadded_log_probability():
    model, tokenizer = tiny_chat_model(seed=0)
    policy = get_peft_model(model, lora_config(LoraSettings(r=4, alpha=8, dropout=0.0)))
    actor = ppo.ActorCritic(policy, tokenizer, torch.nn.Linear(model.config.hidden_size, 1))
    pairs = [([5, 6, 7, 8, 9], [10, 11]), ([12, 13], [14, 15, 16, 2])]
    batch = collate(pairs, tokenizer.pad_token_id, "cpu")
    logp, values = actor.forward(batch, temperature=1.0)
    assert batch.mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    for row, (prompt, reply) in enumerate(pairs):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + reply])).logits[0].log_softmax(-1)
        expected = [logits[len(prompt) - 1 + j, token].item() for j, token in enumerate(reply)]
        assert logp[row, : len(reply)].tolist() == pytest.approx(expected, abs=1e-5)
        assert (logp[row, len(reply) :] == 0).all() and (values[row, len(reply) :] == 0).all()


def test_encode_keeps_the_end_of_turn_token_only_when_the_reply_ended():
    _, tokenizer = tiny_chat_model(seed=0)
    eos = tokenizer.eos_token_id
    rollout = ScoredReply(
        prefix=None,
        messages=({"role": "user", "content": "hi"},),
        reply="Sure!",
        finished=True,
        mr=0.5,
    )
    prompt, reply = encode(tokenizer, rollout, eos, max_length=256)
    assert reply[-1] == eos and tokenizer.decode(reply[:-1]) == "Sure!"
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    cut = ScoredReply(prefix=None, messages=rollout.messages, reply="Sure!", finished=False, mr=0.5)
    assert eos not in encode(tokenizer, cut, eos, max_length=256)[1]
    empty = ScoredReply(prefix=None, messages=rollout.messages, reply="", finished=False, mr=0.5)
    assert encode(tokenizer, empty, eos, max_length=256)[1] == [eos]


def test_cut_replies_are_counted_and_trained_without_an_end_of_turn_token(
    run, tiny_model, monkeypatch
):
    sampled, encoded = [], []
    experience, real_encode = ppo.PPO.experience, ppo.encode

    def spy_experience(self, replies, *args):
        sampled.extend(replies)
        return experience(self, replies, *args)

    def spy_encode(tokenizer, scored, eos_id, max_length):
        pair = real_encode(tokenizer, scored, eos_id, max_length)
        encoded.append((scored, pair[1], eos_id))
        return pair

    monkeypatch.setattr(ppo.PPO, "experience", spy_experience)
    monkeypatch.setattr(ppo, "encode", spy_encode)
    ppo.train(ppo_config(run, tiny_model, updates=1))
    [step] = history(run / "out" / "checkpoint-1")
    assert step["scored"] == len(sampled) == 4
    # the tiny random model rarely ends within 6 tokens: its cut replies are counted
    assert step["cut"] == sum(r.cut for r in sampled) > 0
    assert all(r.cut != r.finished for r in sampled)
    for scored, reply, eos in encoded:
        assert (reply[-1] == eos) if scored.finished else (eos not in reply)
