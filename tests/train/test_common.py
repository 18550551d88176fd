"""What every recipe relies on, checked through the SFT and DPO recipes: exact resumption
(2N steps straight == N, stop, resume N), refusing incomplete checkpoints, stopping at the first
NaN loss with the last checkpoint untouched, and the shared helpers."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from collabrl.config import TrainConfig
from collabrl.testing.tiny_model import tiny_tokenizer
from collabrl.train import dpo, sft
from collabrl.train.common import (
    CHATML_WITH_GENERATION,
    CheckpointError,
    NonFiniteLossError,
    checkpoint_to_resume,
    read_rows,
    trainer_arguments,
    training_chat_template,
    verify_checkpoint,
)

RECIPES = {"sft": sft, "dpo": dpo}


@pytest.fixture(autouse=True)
def no_eval_rows(export_dir):
    """Evaluation is not what these tests are about; without eval rows they run faster."""
    for name in ("sft_eval.jsonl", "dpo_eval.jsonl"):
        (export_dir / name).unlink()


class StopAt(TrainerCallback):
    """Ends training after ``step`` (its checkpoint is saved first), like a killed run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


class HashOnSave(TrainerCallback):
    """Records the sha256 of every file of each checkpoint right after it is written."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.hashes[folder.name] = folder_hashes(folder)


def folder_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def losses(trainer) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}


def run(recipe, config: TrainConfig, *callbacks, resume: str | None = None):
    trainer, reports = recipe.build_trainer(config)
    for callback in callbacks:
        trainer.add_callback(callback)
    recipe.fit(trainer, config, reports, resume)
    return trainer


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_resume_gives_the_same_losses_and_weights(make_config, method):
    recipe = RECIPES[method]
    straight_config = make_config(output="straight").train
    straight = run(recipe, straight_config)

    config = make_config(output="resumed").train
    run(recipe, config, StopAt(2))
    assert not (config.output_dir / "checkpoint-4").exists()
    resume = checkpoint_to_resume(config)
    assert resume == str(config.output_dir / "checkpoint-2")
    resumed = run(recipe, config, resume=resume)  # a new trainer, as after a restart

    expected, got = losses(straight), losses(resumed)  # 1-2 restored from the checkpoint's state
    assert set(got) == set(expected) == {1, 2, 3, 4}
    for step in (3, 4):
        assert got[step] == pytest.approx(expected[step], rel=1e-5)
    a = load_file(straight_config.output_dir / "final" / "adapter_model.safetensors")
    b = load_file(config.output_dir / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("missing", [["optimizer.pt"], ["scheduler.pt", "rng_state.pth"]])
def test_incomplete_checkpoint_refuses_to_resume(make_config, missing):
    config = make_config("train.max_steps=2").train
    run(sft, config)
    for name in missing:
        (config.output_dir / "checkpoint-2" / name).unlink()
    with pytest.raises(CheckpointError) as error:
        sft.train(make_config("train.max_steps=4"))
    message = str(error.value)
    assert "checkpoint-2" in message and "train.resume=false" in message
    for name in missing:
        assert (name if not name.startswith("rng_state") else "rng_state*.pth") in message


def test_verify_checkpoint_names_every_missing_file(tmp_path):
    (tmp_path / "trainer_state.json").write_text("{}")
    with pytest.raises(
        CheckpointError,
        match=r"optimizer\.pt, scheduler\.pt, rng_state\*\.pth, "
        r"model weights",
    ):
        verify_checkpoint(tmp_path)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "adapter_model.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    verify_checkpoint(tmp_path)


def test_resume_off_or_nothing_to_resume(make_config, tmp_path):
    assert checkpoint_to_resume(make_config().train) is None  # no output folder yet
    (tmp_path / "run" / "checkpoint-2").mkdir(parents=True)  # empty: would be refused
    assert checkpoint_to_resume(make_config("train.resume=false").train) is None
    with pytest.raises(CheckpointError):
        checkpoint_to_resume(make_config().train)


@pytest.mark.parametrize("method", ["sft", "dpo"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_stops_before_the_update_and_keeps_the_checkpoint(make_config, method, bad):
    recipe = RECIPES[method]
    config = make_config("train.max_steps=4").train
    trainer, reports = recipe.build_trainer(config)
    saved = HashOnSave()
    trainer.add_callback(saved)
    compute_loss = trainer.compute_loss

    def poisoned(*args, **kwargs):  # the third step's loss is non-finite
        loss = compute_loss(*args, **kwargs)
        return loss * bad if trainer.state.global_step == 2 else loss

    trainer.compute_loss = poisoned
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        recipe.fit(trainer, config, reports, None)
    assert trainer.state.global_step == 2
    assert sorted(p.name for p in config.output_dir.glob("checkpoint-*")) == ["checkpoint-2"]
    checkpoint = config.output_dir / "checkpoint-2"
    assert folder_hashes(checkpoint) == saved.hashes["checkpoint-2"]
    # the weights in memory are still those of the checkpoint: the bad step was not applied
    stored = load_file(checkpoint / "adapter_model.safetensors")
    live = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert len(stored) == len(live)
    for name, value in live.items():
        key = name.replace(".default", "")
        torch.testing.assert_close(value.detach().cpu(), stored[key])  # the file loads on the CPU
    assert not (config.output_dir / "final").exists()


def test_read_rows_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="dpo_train.jsonl not found"):
        read_rows(tmp_path, "dpo_train")


def test_training_chat_template_keeps_the_model_family_format():
    from trl.chat_template_utils import llama3_chat_template, qwen2_5_chat_template

    tokenizer = tiny_tokenizer()
    own = tokenizer.chat_template  # has generation markers: kept as it is
    assert training_chat_template(tokenizer) == own
    tokenizer.chat_template = llama3_chat_template  # TRL's patched Llama 3 template, not ChatML
    llama = training_chat_template(tokenizer)
    assert "{% generation %}" in llama and "<|start_header_id|>" in llama
    tokenizer.chat_template = qwen2_5_chat_template
    assert "{% generation %}" in training_chat_template(tokenizer)
    plain_chatml = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] "
        "+ '<|im_end|>\\n' }}{% endfor %}"
    )
    tokenizer.chat_template = plain_chatml  # ChatML unknown to TRL (SmolLM2): ChatML with markers
    assert training_chat_template(tokenizer) == CHATML_WITH_GENERATION
    unknown = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
    tokenizer.chat_template = unknown  # never swapped for a foreign format
    assert training_chat_template(tokenizer) == unknown


def test_load_tokenizer_keeps_the_served_template_unless_sft_needs_markers(tmp_path):
    """DPO/GRPO/PPO train on prompts formatted as the served model formats them (SmolLM2's
    template adds a default system line that ChatML-with-markers would drop)."""
    from collabrl.train.common import load_tokenizer

    served = (
        "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are SmolLM."
        "<|im_end|>\\n' }}{% endif %}{% for m in messages %}{{ '<|im_start|>' + m['role'] "
        "+ '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = served
    tokenizer.save_pretrained(tmp_path)
    assert load_tokenizer(str(tmp_path)).chat_template == served
    assert "You are SmolLM." in load_tokenizer(str(tmp_path)).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False
    )
    assert (
        load_tokenizer(str(tmp_path), assistant_markers=True).chat_template
        == CHATML_WITH_GENERATION
    )


def test_trainer_arguments_train_bf16_on_the_cpu(make_config, monkeypatch):
    from trl import DPOConfig

    monkeypatch.setattr("collabrl.train.common.torch_dtype", lambda name: torch.bfloat16)
    config = make_config().train
    arguments = trainer_arguments(config, 1e-5, 1.0)
    assert arguments["bf16"] is True
    assert arguments["use_cpu"] is not torch.cuda.is_available()
    DPOConfig(**arguments)  # transformers refuses bf16 on a CPU without use_cpu
