"""Online DPO on the tiny model: rounds run and train, round 2 samples from the updated weights,
resuming after round 1 equals a straight run, incomplete checkpoints are refused, NaN stops it,
the reference is the policy at the start (the init adapter when there is one), and a reply the
length limit cut is never the chosen one by default."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from collabrl.backends.accounting import UsageMeter
from collabrl.backends.hf_local import HFLocalBackend
from collabrl.config import Config
from collabrl.testing.online import online_config
from collabrl.tracking_figures import online_dpo_figures
from collabrl.train import online_dpo
from collabrl.train.checkpoint import find_resumable
from collabrl.train.common import CheckpointError, NonFiniteLossError
from collabrl.train.live_reward import LiveReward
from collabrl.types import Completion


def adapter(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def lora_weights(model) -> dict[str, torch.Tensor]:
    """The trained adapter's weights, named as in its saved file (the live policy's fingerprint)."""
    return {
        name.replace(".default", ""): p.detach().cpu().clone()  # saved files load on the CPU
        for name, p in model.named_parameters()
        if "lora_" in name and ".default." in name
    }


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_info(config) -> dict:
    return json.loads((config.train.output_dir / "run_info.json").read_text())


def test_rounds_train_the_adapter_and_report_each_round(run, tiny_model, capsys):
    config = online_config(run, tiny_model)
    final = online_dpo.train(config)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("online-dpo round")]
    assert [x.split(":")[0] for x in lines] == ["online-dpo round 1/2", "online-dpo round 2/2"]
    assert all("mean_mr " in x and "pairs " in x and "metric/interactivity 1" in x for x in lines)
    assert any("lora_B" in n and t.abs().sum() > 0 for n, t in adapter(final).items())
    rounds = run_info(config)["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["prefixes"] == 3 and r["replies"] == 6
        assert r["pairs"] == r["pair_filter"].get("kept", 0) > 0
        assert r["unscored_replies"] == 0 and r["unscored_futures"] == 0
        assert r["mean_mr_chosen"] >= r["mean_mr"] >= r["mean_mr_rejected"]
        assert all(math.isfinite(x) for x in r["losses"])
    # the reference is the starting policy (base, adapter disabled): the first loss is ln 2
    assert rounds[0]["losses"][0] == pytest.approx(math.log(2), abs=1e-6)
    assert run_info(config)["reference"] == "base model (adapter disabled)"
    assert sorted(p.name for p in config.train.output_dir.glob("round-*")) == ["round-1", "round-2"]

    # from that adapter as init_adapter, the reference is the adapter itself: ln 2 again
    again = online_config(
        run,
        tiny_model,
        output_dir=str(run / "from-init"),
        online_dpo={"rounds": 1, "init_adapter": str(final)},
    )
    online_dpo.train(again)
    assert run_info(again)["rounds"][0]["losses"][0] == pytest.approx(math.log(2), abs=1e-6)
    assert "init_adapter" in run_info(again)["reference"]


def test_round_two_samples_from_the_weights_round_one_produced(run, tiny_model, monkeypatch):
    events: list[tuple[str, object]] = []
    generate, do_round, save = (
        HFLocalBackend._generate,
        online_dpo.OnlineDPO.round,
        online_dpo.OnlineDPO.save,
    )

    def spy_generate(self, rows):
        events.append(("sample", lora_weights(self.model)))
        return generate(self, rows)

    def spy_round(self, index, *args):
        events.append(("round", index))
        return do_round(self, index, *args)

    def spy_save(self):
        events.append(("saved", lora_weights(self.model)))
        return save(self)

    monkeypatch.setattr(HFLocalBackend, "_generate", spy_generate)
    monkeypatch.setattr(online_dpo.OnlineDPO, "round", spy_round)
    monkeypatch.setattr(online_dpo.OnlineDPO, "save", spy_save)
    config = online_config(run, tiny_model)
    online_dpo.train(config)
    kinds = [kind for kind, _ in events]
    second = kinds.index("round", 1)
    first_samples = [w for kind, w in events[:second] if kind == "sample"]
    second_samples = [w for kind, w in events[second:] if kind == "sample"]
    after_round_one = events[second - 1][1]
    assert kinds[second - 1] == "saved" and first_samples and second_samples
    assert not same(first_samples[0], after_round_one)  # the update changed the weights
    assert all(same(w, first_samples[0]) for w in first_samples)
    assert all(same(w, after_round_one) for w in second_samples)  # candidates and futures
    assert same(adapter(config.train.output_dir / "round-1"), after_round_one)


def test_resuming_after_round_one_equals_a_straight_run(run, tiny_model):
    # LoRA dropout draws from the global RNG, so this also needs the RNG state restored
    lora = {"r": 4, "alpha": 8, "dropout": 0.1}
    straight = online_config(run, tiny_model, output_dir=str(run / "straight"), lora=lora)
    online_dpo.train(straight)
    split = online_config(
        run, tiny_model, output_dir=str(run / "split"), lora=lora, online_dpo={"rounds": 1}
    )
    online_dpo.train(split)
    resumed = online_config(run, tiny_model, output_dir=str(run / "split"), lora=lora)
    online_dpo.train(resumed)
    assert run_info(resumed)["resumed_from"].endswith("round-1")
    a, b = adapter(run / "straight" / "final"), adapter(run / "split" / "final")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    rounds_a, rounds_b = run_info(straight)["rounds"], run_info(resumed)["rounds"]
    for x, y in zip(rounds_a, rounds_b, strict=True):
        assert x["pairs"] == y["pairs"] and x["mean_mr"] == pytest.approx(y["mean_mr"])
        assert x["losses"] == pytest.approx(y["losses"], rel=1e-5)


def test_an_incomplete_checkpoint_is_refused(run, tiny_model):
    config = online_config(run, tiny_model, online_dpo={"rounds": 1})
    online_dpo.train(config)
    (config.train.output_dir / "round-1" / "optimizer.pt").unlink()
    more = online_config(run, tiny_model, online_dpo={"rounds": 2})
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        online_dpo.train(more)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_round(run, tiny_model, monkeypatch):
    loss = online_dpo.dpo_loss
    calls = []

    def nan_in_round_two(*args):
        calls.append(1)
        value = loss(*args)
        return value * float("nan") if len(calls) > 1 else value

    monkeypatch.setattr(online_dpo, "dpo_loss", nan_in_round_two)
    config = online_config(run, tiny_model, per_device_batch_size=4)
    saved = {}
    save = online_dpo.OnlineDPO.save

    def spy_save(self):
        saved["weights"] = lora_weights(self.model)
        return save(self)

    monkeypatch.setattr(online_dpo.OnlineDPO, "save", spy_save)
    with pytest.raises(NonFiniteLossError, match="round 2"):
        online_dpo.train(config)
    assert [p.name for p in config.train.output_dir.glob("round-*")] == ["round-1"]
    assert find_resumable(config.train, "round").name == "round-1"
    assert same(adapter(config.train.output_dir / "round-1"), saved["weights"])


def test_full_fine_tuning_keeps_a_frozen_reference_and_resumes(run, tiny_model):
    config = online_config(run, tiny_model, lora=None, online_dpo={"rounds": 1})
    online_dpo.train(config)
    assert run_info(config)["rounds"][0]["losses"][0] == pytest.approx(math.log(2), abs=1e-6)
    assert (config.train.output_dir / "round-1" / "model.safetensors").exists()
    more = online_config(run, tiny_model, lora=None)
    final = online_dpo.train(more)
    info = run_info(more)
    assert info["resumed_from"].endswith("round-1") and len(info["rounds"]) == 2
    assert info["reference"] == "frozen copy of the starting model"
    base, trained = (
        load_file(tiny_model / "model.safetensors"),
        load_file(final / "model.safetensors"),
    )
    assert any(not torch.equal(base[k], trained[k]) for k in base)


# Per prompt of a round: (reply, finish reason). With no future turns (reward.window 0) MR is the
# reply's token efficiency (shorter is better) plus a fixed grade, so the shortest reply is best.
SAMPLES = [
    [
        ("Yes.", "length"),
        ("Sure, here is a short answer.", "stop"),
        (" ".join(["stop"] * 20), "stop"),
    ],
    [("Ok.", "stop"), (" ".join(["cut"] * 20), "length")],
    [("No.", "length"), (" ".join(["both cut"] * 10), "length")],
]
CUT = {text for group in SAMPLES for text, reason in group if reason == "length"}
SCORED: list[str] = []  # the replies MR was asked for in the last scripted round


def scripted_round(run, tiny_model, monkeypatch, **online_dpo_settings) -> list[dict]:
    """Run one round on ``SAMPLES`` (the live policy not asked); returns the pairs it trained on.
    The test config's ``cut_replies: as_complete`` is dropped, so the default applies unless
    ``online_dpo_settings`` sets it."""

    async def sample(self, prompts, index):
        return [[Completion(text=t, finish_reason=r) for t, r in SAMPLES[j]] for j in range(3)]

    pairs = []
    encode_pair = online_dpo.OnlineDPO._encode_pair

    def spy_encode_pair(self, pair):
        pairs.append(pair)
        return encode_pair(self, pair)

    score_replies = LiveReward.score_replies

    async def spy_score_replies(self, prefix, replies):
        SCORED.extend(replies)
        return await score_replies(self, prefix, replies)

    SCORED.clear()
    monkeypatch.setattr(LiveReward, "score_replies", spy_score_replies)
    monkeypatch.setattr(online_dpo.OnlineDPO, "_sample", sample)
    monkeypatch.setattr(online_dpo.OnlineDPO, "_encode_pair", spy_encode_pair)
    data = online_config(run, tiny_model, online_dpo={"rounds": 1}).model_dump(mode="json")
    del data["train"]["online_dpo"]["cut_replies"]
    data["train"]["online_dpo"] |= online_dpo_settings
    data["reward"]["window"] = 0
    online_dpo.train(Config.model_validate(data))
    return pairs


def test_by_default_a_cut_reply_is_only_ever_the_rejected_one(run, tiny_model, monkeypatch):
    pairs = scripted_round(run, tiny_model, monkeypatch)
    chosen = [p["chosen"][0]["content"] for p in pairs]
    rejected = [p["rejected"][0]["content"] for p in pairs]
    assert chosen == ["Sure, here is a short answer.", "Ok."]  # not the better, cut "Yes."
    assert rejected == [SAMPLES[0][2][0], SAMPLES[1][1][0]]  # a cut reply can be rejected
    assert not CUT & set(chosen)
    [stats] = run_info(online_config(run, tiny_model))["rounds"]
    assert stats["prefixes"] == 3 and stats["replies"] == 7 and stats["cut_replies"] == 4
    assert stats["pairs"] == 2
    # the third prompt: every reply cut, so no pair can come out and MR is not asked for
    assert stats["pair_filter"]["every_reply_cut"] == 1 and stats["replies_skipped"] == 2
    assert len(SCORED) == 5 and not {text for text, _ in SAMPLES[2]} & set(SCORED)
    assert stats["pair_filter"]["every_scored_candidate_cut"] == 0
    assert online_dpo_figures(stats, UsageMeter())["online_dpo/cut_rate"] == pytest.approx(4 / 7)


def test_as_complete_lets_a_cut_reply_be_chosen(run, tiny_model, monkeypatch):
    pairs = scripted_round(run, tiny_model, monkeypatch, cut_replies="as_complete")
    assert [p["chosen"][0]["content"] for p in pairs] == ["Yes.", "Ok.", "No."]
    [stats] = run_info(online_config(run, tiny_model))["rounds"]
    assert stats["cut_replies"] == 4 and stats["pairs"] == 3
    assert stats["pair_filter"]["every_reply_cut"] == 0 and stats["replies_skipped"] == 0
