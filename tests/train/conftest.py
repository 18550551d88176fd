"""Fixtures for the training recipes: a tiny random chat model saved once per session, an export
folder like ``collabrl export`` writes, small fp32 CPU configs, and generate runs for the online
recipes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from collabrl.config import Config, load_config
from collabrl.testing.online import write_generate_run
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


@pytest.fixture
def run(tmp_path) -> Path:
    """A generate run (3 conversations of 2 turns: 6 prefixes) in ``tmp_path`` for the online
    recipes; ``collabrl.testing.online`` builds their configs over it."""
    write_generate_run(tmp_path, conversations=3, turns=2)
    return tmp_path


@pytest.fixture
def prefix_run(tmp_path) -> Path:
    """A larger generate run (4 conversations of 3 turns: 12 prefixes) in ``tmp_path``."""
    write_generate_run(tmp_path, conversations=4, turns=3)
    return tmp_path
