"""One checkpoint format for the training loops we own (PPO, online DPO), and one resume finder.

A checkpoint is the folder ``<kind>-<N>`` in ``train.output_dir`` after N steps (``checkpoint-N``
after N PPO updates, ``round-N`` after N online DPO rounds). It holds:
- the weights: the LoRA adapter (``adapter_model.safetensors``, ``adapter_config.json``) or the
  whole model, and whatever the recipe adds (PPO's value head, online DPO's tokenizer);
- ``optimizer.pt``, and ``scheduler.pt`` when the recipe has a scheduler;
- ``rng_state.pth``: the python, numpy, torch and CUDA generator states;
- ``state.json``: ``step`` (steps done), ``data_position`` (batches of data consumed: where the
  next step's data starts) and ``extra`` (the recipe's own JSON state, e.g. every step's metrics).

It is written to a hidden temporary folder and renamed into place, so a crash never leaves a
half-written folder under a checkpoint's name. Resuming takes the highest N and refuses a folder
that lacks a file exact resumption needs (``CheckpointError`` names them). Folders written before
this format (``ppo_state.json`` or ``online_dpo_state.json`` instead of ``state.json``) resume too.

The TRL recipes (SFT, DPO, GRPO) keep TRL's own ``checkpoint-N`` folders: they share the finder
(``find_resumable``), its refusal and ``CheckpointError``; ``common.verify_checkpoint`` checks
TRL's files. torch and
numpy load on first use: the CLI imports ``CheckpointError`` through ``common`` at start-up.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collabrl.config import TrainConfig

OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng_state.pth"
STATE_FILE = "state.json"
WEIGHT_FILES = (
    "adapter_model.safetensors",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
)
LEGACY_STATE_FILES = {"ppo_state.json": "update", "online_dpo_state.json": "rounds_done"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed exactly; the message names what is missing."""


@dataclass(frozen=True)
class TrainingState:
    """Where training stands: steps done, data consumed, and the recipe's own JSON state."""

    step: int = 0
    data_position: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def folder_name(kind: str, step: int) -> str:
    return f"{kind}-{step}"


def save(
    output_dir: Path,
    kind: str,
    state: TrainingState,
    optimizer,
    write_weights: Callable[[Path], None],
    scheduler=None,
) -> Path:
    """``<kind>-<state.step>``, written to a temporary folder and renamed into place."""
    import torch

    target = output_dir / folder_name(kind, state.step)
    tmp = output_dir / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_weights(tmp)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    if scheduler is not None:
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
    torch.save(rng_state(), tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2, allow_nan=False))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def save_weights(model, folder: Path, tokenizer=None) -> None:
    """The trained LoRA adapter (not a reference adapter beside it) or the whole model."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.save_pretrained(str(folder), selected_adapters=["default"])
    else:
        model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def latest(output_dir: Path, kind: str) -> Path | None:
    """The ``<kind>-<N>`` folder with the highest N in ``output_dir``, if any."""
    pattern = re.compile(rf"{re.escape(kind)}-(\d+)")
    if not output_dir.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if p.is_dir() and (m := pattern.fullmatch(p.name))
    ]
    return max(found)[1] if found else None


def find_resumable(
    train_config: TrainConfig,
    kind: str,
    required: tuple[str, ...] = (),
    verify_folder: Callable[[Path, tuple[str, ...]], None] | None = None,
) -> Path | None:
    """The last ``<kind>-<N>`` when ``train.resume`` is on; refuses an incomplete one (checked
    by ``verify_folder``, this format's ``verify`` unless the folders are another's, e.g. TRL's)."""
    if not train_config.resume:
        return None
    last = latest(train_config.output_dir, kind)
    if last is not None:
        (verify_folder or verify)(last, required)
    return last


def verify(folder: Path, required: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError unless ``folder`` holds the weights, the ``required`` files of its
    recipe, the optimizer, RNG and training state."""
    missing = [
        name for name in (*required, OPTIMIZER_FILE, RNG_FILE) if not (folder / name).exists()
    ]
    if _state_file(folder) is None:
        missing.append(STATE_FILE)
    if not any((folder / name).exists() for name in WEIGHT_FILES):
        missing.append("model weights")
    refuse_incomplete(folder, missing, "the weights, optimizer, RNG and training state")


def refuse_incomplete(folder: Path, missing: list[str], needs: str) -> None:
    """Raise CheckpointError naming what ``folder`` lacks, when it lacks anything."""
    if missing:
        raise CheckpointError(
            f"cannot resume from {folder}: missing {', '.join(missing)}. Exact resumption needs "
            f"{needs}; delete the folder to start over or set train.resume=false."
        )


def restore(folder: Path, optimizer, scheduler=None, device=None) -> TrainingState:
    """Load the optimizer, scheduler and RNG states (last, after every model is built); the
    training state."""
    import torch

    optimizer.load_state_dict(
        torch.load(folder / OPTIMIZER_FILE, map_location=device, weights_only=True)
    )
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=True))
    set_rng_state(torch.load(folder / RNG_FILE, weights_only=False))  # ours: python/numpy states
    return read_state(folder)


def read_state(folder: Path) -> TrainingState:
    """The training state of ``folder``, from ``state.json`` or a pre-format state file."""
    path = _state_file(folder)
    if path is None:
        raise CheckpointError(f"{folder} has no {STATE_FILE}")
    data = json.loads(path.read_text())
    if path.name == STATE_FILE:
        return TrainingState(**data)
    step = data[LEGACY_STATE_FILES[path.name]]
    return TrainingState(step, step, {"history": data["history"]})


def _state_file(folder: Path) -> Path | None:
    names = (STATE_FILE, *LEGACY_STATE_FILES)
    return next((folder / n for n in names if (folder / n).exists()), None)


def rng_state() -> dict:
    import numpy as np
    import torch

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(rng: dict) -> None:
    import numpy as np
    import torch

    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
