"""``collabrl train dpo`` as a user sees it in a CI log (stdout a pipe): our lines and a step
progress, no library warnings and no ``{'loss': ...}`` dictionaries; those are in the log file."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_training_console_is_clean_and_the_log_file_has_the_rest(tiny_model, export_dir, tmp_path):
    output = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collabrl",
            "train",
            "dpo",
            f"train.model={tiny_model}",
            f"train.output_dir={output}",
            f"train.dpo.data={export_dir}",
            "train.dtype=float32",
            "train.per_device_batch_size=2",
            "train.max_steps=4",
            "train.logging_steps=1",
            "train.max_length=256",
            "train.lora.r=8",
            "train.dpo.max_prompt_length=192",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert "train: 4/4 steps" in done.stdout and "dpo: model saved to" in done.stdout
    for noise in ("{'loss'", "Warning", "WARNING", "warn", "it/s]"):
        assert noise not in done.stdout, noise
    log = (output / "collabrl.log").read_text()
    assert "---- collabrl train dpo ----" in log and '"loss":' in log and "train_runtime" in log
