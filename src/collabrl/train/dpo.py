"""Offline DPO on the data engine's preference pairs: per scored turn, the highest-MR reply is
chosen and the lowest-MR reply rejected, so the policy learns which reply moves the whole
conversation forward rather than which looks best in isolation.

The rows are ``dpo_train.jsonl`` (and ``dpo_eval.jsonl`` when non-empty) of ``collabrl export``,
in TRL's conversational preference format: ``prompt`` = the conversation so far (a list of
messages), ``chosen`` / ``rejected`` = one assistant message each.

How it trains (paper defaults in ``DPOSettings``/``LoraSettings``: beta 0.1, lr 5e-6, 8 epochs,
LoRA r=32, alpha=16, dropout 0.1, batch 64 = per-device batch x accumulation x processes):
- the data is validated and long prompts are truncated from the start BEFORE the trainer sees it
  (``collabrl.train.data.prepare_pairs``), each change counted in the console and in
  ``run_info.json``. TRL's DPOConfig has no ``max_prompt_length`` and its own truncation keeps the
  start of the sequence, silently dropping examples whose prompt alone is too long;
- the reference policy is the base model with the adapter disabled: the trainer receives the base
  model plus ``peft_config`` and, with ``ref_model=None``, computes reference log-probabilities
  under ``disable_adapter()`` (a model already wrapped in PEFT would instead get a second,
  copied "ref" adapter, an extra forward through LoRA layers for nothing);
- ``disable_dropout=False``: TRL zeroes every dropout by default, which would silently turn the
  configured LoRA dropout off. The reference forward runs with the adapter disabled, so it stays
  deterministic whatever the dropout;
- reference log-probabilities are computed per batch, in the same step (no precompute pass);
- TRL's fused LM head scores only completion positions on CPU too (``collabrl.train.lm_head``);
- an incomplete checkpoint refuses to resume, a NaN/inf loss stops training before it is applied,
  the final adapter (or model) and tokenizer go to ``output_dir/final``.

It runs unchanged under ``accelerate launch``; only the main process prints and writes
``run_info.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

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
from collabrl.train.data import DataReport, TrainingDataError, prepare_pairs
from collabrl.train.lm_head import score_labelled_positions_only


def train(config: Config) -> Path:
    """Run offline DPO as configured in ``config.train``; returns the final adapter/model folder."""
    return run_trl_recipe(config, build_trainer, fit)


def build_trainer(train_config: TrainConfig) -> tuple[DPOTrainer, list[DataReport]]:
    """The DPOTrainer on validated, fitted pairs, and the reports of what the checks did."""
    settings = train_config.dpo
    tokenizer = load_tokenizer(
        resolve_model(train_config.model)
    )  # check the data before loading weights
    train_rows, train_report = _pairs(train_config, tokenizer, "dpo_train", required=True)
    eval_rows, eval_report = _pairs(train_config, tokenizer, "dpo_eval", required=False)
    # The training arguments come before the model: under DeepSpeed ZeRO-3 they make
    # from_pretrained shard the weights while loading instead of loading them whole everywhere.
    args = DPOConfig(
        **trainer_arguments(train_config, settings.learning_rate, settings.epochs),
        beta=settings.beta,
        loss_type=["sigmoid"],
        disable_dropout=False,
        precompute_ref_log_probs=False,
        **eval_arguments(train_config, bool(eval_rows)),
    )
    model, tokenizer = load_policy(train_config.model_copy(update={"lora": None}))
    score_labelled_positions_only()
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(train_config.lora) if train_config.lora is not None else None,
    )
    _check_nothing_dropped(trainer, len(train_rows))
    stop_on_non_finite_loss(trainer)
    return trainer, [train_report, eval_report]


def fit(
    trainer: DPOTrainer, train_config: TrainConfig, reports: list[DataReport], resume: str | None
) -> Path:
    """Train (resuming from ``resume`` if given), save ``output_dir/final``, record the run."""
    return fit_trainer(trainer, train_config, reports, resume, "dpo")


def _pairs(
    train_config: TrainConfig, tokenizer, name: str, required: bool
) -> tuple[list[dict[str, Any]], DataReport]:
    folder = train_config.dpo.data
    exists = (folder / f"{name}.jsonl").exists()
    rows = read_rows(folder, name) if exists or required else []
    kept, report = prepare_pairs(
        rows, tokenizer, train_config.max_length, train_config.dpo.max_prompt_length, name
    )
    if required and not kept:
        raise TrainingDataError(
            f"no usable preference pairs in {folder}/{name}.jsonl ({report.summary()})"
        )
    return kept, report


def _check_nothing_dropped(trainer: DPOTrainer, rows: int) -> None:
    """TRL filters over-long examples silently; after our truncation it must keep every row."""
    if len(trainer.train_dataset) != rows:
        raise TrainingDataError(
            f"TRL dropped {rows - len(trainer.train_dataset)} of {rows} fitted pairs while "
            f"preparing them; the prompt fitting and TRL's tokenization disagree on lengths"
        )
