"""Fixtures for the training recipes: a tiny random chat model saved once per session, an export
folder like ``collabrl export`` writes, and small fp32 CPU configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from collabrl.config import Config, load_config
from collabrl.testing.tiny_model import save_tiny_chat_model
from collabrl.testing.train_data import write_export


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def export_dir(tmp_path) -> Path:
    return write_export(tmp_path / "export")


def tiny_overrides(model: Path, export: Path, output: Path) -> list[str]:
    return [
        f"train.model={model}",
        f"train.output_dir={output}",
        "train.dtype=float32",
        "train.per_device_batch_size=2",
        "train.gradient_accumulation_steps=1",
        "train.max_steps=4",
        "train.save_steps=2",
        "train.logging_steps=1",
        "train.max_length=256",
        "train.lora.r=8",
        "train.lora.alpha=16",
        "train.sft.learning_rate=1e-3",
        "train.dpo.learning_rate=1e-3",
        "train.dpo.max_prompt_length=192",
        f"train.sft.data={export}",
        f"train.dpo.data={export}",
    ]


@pytest.fixture
def make_config(tiny_model, export_dir, tmp_path) -> Callable[..., Config]:
    """A Config for a few fp32 CPU steps on the tiny model; extra ``key=value`` overrides win."""

    def make(*overrides: str, output: str = "run") -> Config:
        return load_config(
            None, [*tiny_overrides(tiny_model, export_dir, tmp_path / output), *overrides]
        )

    return make
