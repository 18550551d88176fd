"""Supervised fine-tuning (SFT) on the best path of each generated conversation.

The data engine continues every conversation with its highest-MR reply, so a finished
conversation is a demonstration of collaborative behaviour; SFT teaches the policy to imitate it.
The rows are ``sft_train.jsonl`` (and ``sft_eval.jsonl`` when non-empty) of ``collabrl export``:
``{"messages": [...], "conversation_id": ...}``.

How it trains (paper defaults in ``SFTSettings`` and ``LoraSettings``: lr 1e-5, 3 epochs,
LoRA r=32, alpha=16, dropout 0.1, batch 64 = per-device batch x accumulation x processes):
- TRL's SFTTrainer with ``assistant_only_loss=True``: the loss is on the assistant's tokens only
  (its end-of-turn token included), never on what the user simulator wrote. This needs a chat
  template with ``{% generation %}`` markers, which ``load_tokenizer`` provides;
- the LoRA adapter is created by the trainer from ``peft_config`` (so TRL's DeepSpeed ZeRO-3
  handling of adapter dtypes applies); the configured dropout is kept;
- rows are checked first (see ``collabrl.train.data``): nothing is dropped without a count;
- an incomplete checkpoint refuses to resume, a NaN/inf loss stops training before it is applied;
- the adapter (or full model) and the tokenizer are saved to ``output_dir/final``.

It runs unchanged under ``accelerate launch`` (DDP, DeepSpeed): TRL shards the work, and only the
main process prints and writes ``run_info.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from collabrl.config import Config, TrainConfig
from collabrl.models import resolve_model
from collabrl.train.common import (
    eval_arguments,
    fit_trainer,
    load_policy,
    load_tokenizer,
    lora_config,
    read_rows,
    run_trl_recipe,
    stop_on_non_finite_loss,
    trainer_arguments,
)
from collabrl.train.data import DataReport, TrainingDataError, prepare_conversations
from collabrl.train.lm_head import score_labelled_positions_only


def train(config: Config) -> Path:
    """Run SFT as configured in ``config.train``; returns the folder of the final adapter/model."""
    return run_trl_recipe(config, build_trainer, fit)


def build_trainer(train_config: TrainConfig) -> tuple[SFTTrainer, list[DataReport]]:
    """The SFTTrainer on the checked rows, and the reports of what the checks did."""
    settings = train_config.sft
    # check the data before loading weights
    tokenizer = load_tokenizer(resolve_model(train_config.model), assistant_markers=True)
    train_rows, train_report = prepare_conversations(
        read_rows(settings.data, "sft_train"), tokenizer, train_config.max_length, "sft_train"
    )
    if not train_rows:
        raise TrainingDataError(
            f"no usable SFT rows in {settings.data}/sft_train.jsonl ({train_report.summary()})"
        )
    eval_rows, eval_report = prepare_conversations(
        _optional_rows(settings.data, "sft_eval"), tokenizer, train_config.max_length, "sft_eval"
    )
    # The training arguments come before the model: under DeepSpeed ZeRO-3 they make
    # from_pretrained shard the weights while loading instead of loading them whole everywhere.
    args = SFTConfig(
        **trainer_arguments(train_config, settings.learning_rate, settings.epochs),
        assistant_only_loss=True,
        **eval_arguments(train_config, bool(eval_rows)),
    )
    model, tokenizer = load_policy(
        train_config.model_copy(update={"lora": None}), assistant_markers=True
    )
    score_labelled_positions_only()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(train_config.lora) if train_config.lora is not None else None,
    )
    stop_on_non_finite_loss(trainer)
    return trainer, [train_report, eval_report]


def fit(
    trainer: SFTTrainer, train_config: TrainConfig, reports: list[DataReport], resume: str | None
) -> Path:
    """Train (resuming from ``resume`` if given), save ``output_dir/final``, record the run."""
    return fit_trainer(trainer, train_config, reports, resume, "sft")


def _optional_rows(folder: Path, name: str) -> list[dict[str, Any]]:
    return read_rows(folder, name) if (folder / f"{name}.jsonl").exists() else []
