"""SFT: loss on assistant tokens only, LoRA settings applied, training changes the adapter,
rows checked with counts, determinism."""

from __future__ import annotations

import json
import math

import pytest
import torch
from peft.tuners.lora import LoraLayer

from collabrl.testing.tiny_model import tiny_tokenizer
from collabrl.testing.train_data import conversation, sft_rows, write_jsonl
from collabrl.train import sft
from collabrl.train.data import TrainingDataError, prepare_conversations


def test_labels_cover_exactly_the_assistant_replies(make_config):
    trainer, _ = sft.build_trainer(make_config().train)
    tokenizer = trainer.processing_class
    rows = trainer.train_dataset.select(range(2))
    batch = trainer.data_collator([{k: row[k] for k in ("input_ids", "labels")} for row in rows])
    for i, row in enumerate(rows):
        labels, input_ids = batch["labels"][i], batch["input_ids"][i]
        trained = input_ids[labels != -100].tolist()
        replies = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert tokenizer.decode(trained) == "".join(r + tokenizer.eos_token for r in replies)
        assert torch.equal(labels[labels != -100], input_ids[labels != -100])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # padding never trained


def test_lora_settings_are_applied(make_config):
    config = make_config("train.lora.r=4", "train.lora.alpha=12", "train.lora.dropout=0.25")
    trainer, _ = sft.build_trainer(config.train)
    layers = [m for m in trainer.model.modules() if isinstance(m, LoraLayer)]
    assert len(layers) == 2 * 7  # all-linear: q, k, v, o, gate, up, down in each of 2 layers
    for layer in layers:
        assert layer.r["default"] == 4
        assert layer.scaling["default"] == pytest.approx(12 / 4)
        assert layer.lora_dropout["default"].p == pytest.approx(0.25)


def test_training_changes_the_adapter_and_saves_final(make_config):
    config = make_config("train.max_steps=3")
    trainer, reports = sft.build_trainer(config.train)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {
        n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad
    }
    final = sft.fit(trainer, config.train, reports, None)
    after = dict(trainer.model.named_parameters())
    assert before and all(not torch.equal(before[n], after[n]) for n in before)
    assert all(torch.equal(frozen[n], after[n]) for n in frozen)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert final == config.train.output_dir / "final"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json"):
        assert (final / name).is_file()
    info = json.loads((config.train.output_dir / "run_info.json").read_text())
    assert info["method"] == "sft" and info["global_step"] == 3
    assert info["data"]["sft_train"]["kept"] == 8 and info["data"]["sft_eval"]["kept"] == 2
    assert any("eval_loss" in e for e in trainer.state.log_history)  # sft_eval.jsonl is used


def test_rows_are_checked_with_counts():
    tokenizer = tiny_tokenizer()
    long_row = {"messages": conversation(0, 4) * 3, "conversation_id": "long"}
    rows = [
        *sft_rows(2),
        long_row,
        {"messages": [{"role": "user", "content": "Hi"}], "conversation_id": "no-reply"},
        {
            "messages": [
                {"role": "user", "content": "word " * 300},
                {"role": "assistant", "content": "OK"},
            ],
            "conversation_id": "late",
        },
        {"messages": "oops", "conversation_id": "bad"},
    ]
    kept, report = prepare_conversations(rows, tokenizer, max_length=256)
    assert [r["conversation_id"] for r in kept] == ["c0", "c1", "long"]
    assert report.dropped == {
        "no_assistant_message": 1,
        "first_reply_beyond_max_length": 1,
        "malformed": 1,
    }
    assert report.truncated == 1 and report.tokens_cut > 0


def test_no_usable_rows_is_a_clear_error(make_config, export_dir):
    write_jsonl(export_dir / "sft_train.jsonl", [{"messages": [{"role": "user", "content": "Hi"}]}])
    with pytest.raises(TrainingDataError, match="no usable SFT rows.*no_assistant_message=1"):
        sft.build_trainer(make_config().train)


def test_missing_data_names_the_file(make_config, export_dir):
    (export_dir / "sft_train.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="sft_train.jsonl not found: run `collabrl export`"):
        sft.build_trainer(make_config().train)


def first_losses(config) -> list[float]:
    trainer, reports = sft.build_trainer(config.train)
    sft.fit(trainer, config.train, reports, None)
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def test_same_seed_and_data_give_identical_first_losses(make_config):
    overrides = ("train.max_steps=2", "train.save_steps=10")
    assert first_losses(make_config(*overrides, output="a")) == first_losses(
        make_config(*overrides, output="b")
    )


def _lora_a(trainer):
    return torch.cat(
        [p.detach().flatten() for n, p in trainer.model.named_parameters() if "lora_A" in n]
    )


def test_train_seed_controls_the_adapter_initialisation(make_config):
    torch.manual_seed(123)  # whatever ran before must not matter
    first = _lora_a(sft.build_trainer(make_config("train.seed=5").train)[0])
    torch.manual_seed(456)
    again = _lora_a(sft.build_trainer(make_config("train.seed=5", output="b").train)[0])
    other = _lora_a(sft.build_trainer(make_config("train.seed=6", output="c").train)[0])
    assert torch.equal(first, again) and not torch.equal(first, other)
