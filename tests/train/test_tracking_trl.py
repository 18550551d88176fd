"""A TRL recipe, run by ``collabrl train`` or called from Python, writes its TensorBoard events
under ``tracking.log_dir`` (transformers' own folder otherwise), and the variable that carries it
is gone after the run."""

from __future__ import annotations

import os

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from collabrl.cli import main
from collabrl.train import dpo


def logged_steps(folder) -> list[int]:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [e.step for e in accumulator.Scalars("train/loss")]


@pytest.mark.slow
def test_sft_writes_its_tensorboard_events_under_tracking_log_dir(
    tiny_model, export_dir, tmp_path, monkeypatch
):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    output, log_dir = tmp_path / "run", tmp_path / "tb" / "sft"
    args = [
        "train",
        "sft",
        f"train.model={tiny_model}",
        f"train.output_dir={output}",
        f"train.sft.data={export_dir}",
        "train.dtype=float32",
        "train.per_device_batch_size=2",
        "train.gradient_accumulation_steps=1",
        "train.max_steps=2",
        "train.save_steps=2",
        "train.logging_steps=1",
        "train.max_length=256",
        "train.lora.r=4",
        "tracking.report_to=[tensorboard]",
        f"tracking.log_dir={log_dir}",
    ]
    assert main(args) == 0
    assert logged_steps(log_dir) == [1, 2]
    assert not (output / "runs").exists()  # transformers' default folder is not used
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ


@pytest.mark.slow
def test_dpo_called_from_python_writes_under_log_dir_too(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    log_dir = tmp_path / "tb" / "dpo"
    config = make_config(
        "train.max_steps=2",
        "tracking.report_to=[tensorboard]",
        f"tracking.log_dir={log_dir}",
    )
    dpo.train(config)
    assert logged_steps(log_dir) == [1, 2]
    assert not (config.train.output_dir / "runs").exists()
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ
