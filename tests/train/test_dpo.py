"""Offline DPO: data validation and truncation from the start (counted, never silent), the
reference being the base with the adapter disabled, LoRA settings, training, determinism."""

from __future__ import annotations

import json
import math

import pytest
import torch
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM

from collabrl.testing.tiny_model import tiny_tokenizer
from collabrl.testing.train_data import conversation, dpo_row, write_jsonl
from collabrl.train import dpo
from collabrl.train.data import (
    TrainingDataError,
    completion_length,
    fit_prompt,
    prepare_pairs,
    token_ids,
)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def prompt_tokens(tokenizer, messages) -> int:
    return len(token_ids(tokenizer, messages, generation_prompt=True))


LONG_PROMPT = [
    {"role": "system", "content": "You are a helpful assistant."},
    *conversation(0, 4),
    {"role": "user", "content": "Thanks, please write the final version."},
]


def test_fit_prompt_keeps_the_end_and_drops_whole_early_turns(tokenizer):
    full = prompt_tokens(tokenizer, LONG_PROMPT)
    budget = full - 30
    fitted = fit_prompt(tokenizer, LONG_PROMPT, budget)
    assert prompt_tokens(tokenizer, fitted) <= budget
    assert fitted[0] == LONG_PROMPT[0]  # the system message is kept
    assert fitted[1]["role"] == "user"  # the kept part starts at a user turn
    assert fitted[1:] == LONG_PROMPT[-(len(fitted) - 1) :]  # an ending of the conversation


def test_fit_prompt_keeps_the_tail_of_an_overlong_last_message(tokenizer):
    last = {
        "role": "user",
        "content": " ".join(f"word{i}" for i in range(200)) + " FINAL QUESTION?",
    }
    prompt = [*conversation(1, 2), last]
    fitted = fit_prompt(tokenizer, prompt, 60)
    assert prompt_tokens(tokenizer, fitted) <= 60
    assert len(fitted) == 1 and fitted[0]["role"] == "user"
    assert fitted[0]["content"].endswith("FINAL QUESTION?")
    assert len(fitted[0]["content"]) < len(last["content"])


def test_prepare_pairs_counts_every_drop_and_truncation(tokenizer):
    huge_reply = "Sure! Here is a first draft. " * 60
    rows = [
        dpo_row(0),
        dpo_row(1, chosen="Same reply.", rejected="  Same reply. "),  # equal after stripping
        dpo_row(2, chosen=""),  # empty completion
        dpo_row(3, rejected="   "),  # empty completion
        {"prompt": "not a list", "chosen": [], "rejected": []},  # malformed
        dpo_row(4, prompt=LONG_PROMPT),  # prompt over max_prompt_length: truncated, kept
        dpo_row(5, chosen=huge_reply),  # completion alone over max_length: dropped
    ]
    max_length, max_prompt_length = 200, 60
    kept, report = prepare_pairs(rows, tokenizer, max_length, max_prompt_length, "dpo_train")
    assert report.rows == 7 and report.kept == len(kept) == 2
    assert report.dropped == {
        "chosen_equals_rejected": 1,
        "empty_completion": 2,
        "malformed": 1,
        "completion_too_long": 1,
    }
    assert report.truncated == 1 and report.messages_cut > 0 and report.tokens_cut > 0
    truncated = kept[1]
    assert truncated["conversation_id"] == "c4" and truncated["prompt"][-1] == LONG_PROMPT[-1]
    for row in kept:  # every kept pair fits both limits
        assert prompt_tokens(tokenizer, row["prompt"]) <= max_prompt_length
        for key in ("chosen", "rejected"):
            assert len(token_ids(tokenizer, row["prompt"] + row[key])) <= max_length
    summary = report.summary()
    assert "2/7 rows kept" in summary and "chosen_equals_rejected=1" in summary


def test_prompt_room_shrinks_with_the_completion(tokenizer):
    reply = "Sure! Here is a first draft. Tell me what you would like to change. " * 4
    row = dpo_row(0, prompt=LONG_PROMPT, chosen=reply)
    length = completion_length(tokenizer, LONG_PROMPT, row["chosen"])
    max_length = length + 40  # the prompt gets 40 tokens although max_prompt_length is larger
    [kept], report = prepare_pairs([row], tokenizer, max_length, 1000)
    assert report.truncated == 1
    assert len(token_ids(tokenizer, kept["prompt"] + kept["chosen"])) <= max_length


def write_pairs(export_dir, rows):
    write_jsonl(export_dir / "dpo_train.jsonl", rows)
    (export_dir / "dpo_eval.jsonl").unlink()


def test_trl_keeps_every_fitted_pair_and_run_info_reports_counts(make_config, export_dir):
    rows = [dpo_row(i) for i in range(4)] + [
        dpo_row(4, prompt=LONG_PROMPT),
        dpo_row(5, chosen="x", rejected="x"),
    ]
    write_pairs(export_dir, rows)
    # the default prompts have at most 104 tokens, LONG_PROMPT has about 400
    config = make_config(
        "train.max_length=200", "train.dpo.max_prompt_length=120", "train.max_steps=1"
    )
    trainer, reports = dpo.build_trainer(config.train)
    assert len(trainer.train_dataset) == 5
    for example in trainer.train_dataset:
        assert len(example["prompt_ids"]) <= 120
        longest = max(len(example["chosen_ids"]), len(example["rejected_ids"]))
        assert len(example["prompt_ids"]) + longest <= 200
    dpo.fit(trainer, config.train, reports, None)
    info = json.loads((config.train.output_dir / "run_info.json").read_text())
    assert info["method"] == "dpo"
    assert info["data"]["dpo_train"]["truncated"] == 1
    assert info["data"]["dpo_train"]["dropped"] == {"chosen_equals_rejected": 1}
    assert info["data"]["dpo_eval"]["rows"] == 0


def test_no_usable_pairs_is_a_clear_error(make_config, export_dir):
    write_pairs(export_dir, [dpo_row(0, chosen="x", rejected="x")])
    with pytest.raises(
        TrainingDataError, match="no usable preference pairs.*chosen_equals_rejected=1"
    ):
        dpo.build_trainer(make_config().train)


def test_lora_settings_are_applied_and_dropout_kept(make_config):
    config = make_config("train.lora.r=4", "train.lora.alpha=12", "train.lora.dropout=0.25")
    trainer, _ = dpo.build_trainer(config.train)
    layers = [m for m in trainer.model.modules() if isinstance(m, LoraLayer)]
    assert len(layers) == 2 * 7  # all-linear: q, k, v, o, gate, up, down in each of 2 layers
    for layer in layers:
        assert layer.r["default"] == 4
        assert layer.scaling["default"] == pytest.approx(12 / 4)
        assert layer.lora_dropout["default"].p == pytest.approx(0.25)


def test_reference_is_the_base_model_with_the_adapter_disabled(make_config, tiny_model):
    config = make_config("train.max_steps=2")
    trainer, reports = dpo.build_trainer(config.train)
    assert trainer.ref_model is None
    assert list(trainer.model.peft_config) == ["default"]  # no copied "ref" adapter
    dpo.fit(trainer, config.train, reports, None)
    first = trainer.state.log_history[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at step 0
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    model = trainer.model.eval().cpu()  # the trainer may have moved it to a GPU
    input_ids = torch.tensor(
        [trainer.train_dataset[0]["prompt_ids"] + trainer.train_dataset[0]["chosen_ids"]]
    )
    with torch.no_grad():
        expected = base(input_ids=input_ids).logits
        with model.disable_adapter():
            reference = model(input_ids=input_ids).logits
        policy = model(input_ids=input_ids).logits
    torch.testing.assert_close(reference, expected)
    assert not torch.allclose(policy, expected)  # the adapter did learn something


def test_training_changes_the_adapter_with_finite_losses(make_config):
    config = make_config("train.max_steps=3")
    trainer, reports = dpo.build_trainer(config.train)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {
        n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad
    }
    final = dpo.fit(trainer, config.train, reports, None)
    after = dict(trainer.model.named_parameters())
    assert before and all(not torch.equal(before[n], after[n]) for n in before)
    assert all(torch.equal(frozen[n], after[n]) for n in frozen)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert (final / "adapter_model.safetensors").is_file()
    assert (final / "tokenizer_config.json").is_file()


def first_loss(config) -> float:
    trainer, reports = dpo.build_trainer(config.train)
    dpo.fit(trainer, config.train, reports, None)
    return trainer.state.log_history[0]["loss"], trainer.state.log_history[1]["loss"]


def test_same_seed_and_data_give_identical_first_losses(make_config):
    a = first_loss(make_config("train.max_steps=2", output="a"))
    b = first_loss(make_config("train.max_steps=2", output="b"))
    assert a == b
