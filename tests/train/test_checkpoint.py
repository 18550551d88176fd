"""The one checkpoint format of the online recipes: exact round trip, atomic writes, one finder."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from collabrl.config import TrainConfig
from collabrl.train.checkpoint import (
    RNG_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    CheckpointError,
    TrainingState,
    find_resumable,
    latest,
    read_state,
    restore,
    save,
    verify,
)
from collabrl.train.common import checkpoint_to_resume


def trained_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def weights_of(model):
    return lambda folder: save_file(dict(model.state_dict()), str(folder / "model.safetensors"))


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(1).item()


def test_a_checkpoint_restores_optimizer_scheduler_rng_and_state_exactly(tmp_path):
    model, optimizer, scheduler = trained_optimizer()
    state = TrainingState(3, 3, {"history": [{"loss": 0.5}]})
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    folder = save(tmp_path, "round", state, optimizer, weights_of(model), scheduler)
    expected = draws()
    _, fresh, fresh_scheduler = trained_optimizer(seed=5)
    draws()  # move every generator on; restoring must put them back
    assert restore(folder, fresh, fresh_scheduler) == state
    assert draws() == expected
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    saved, loaded = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    for key in saved:
        torch.testing.assert_close(saved[key]["exp_avg"], loaded[key]["exp_avg"])
    assert folder.name == "round-3" and (folder / SCHEDULER_FILE).exists()


def test_a_crash_while_writing_leaves_the_last_complete_checkpoint_the_latest(tmp_path):
    model, optimizer, _ = trained_optimizer()
    save(tmp_path, "checkpoint", TrainingState(1, 1), optimizer, weights_of(model))

    def crash(folder):
        weights_of(model)(folder)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, "checkpoint", TrainingState(2, 2), optimizer, crash)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checkpoint-2.tmp", "checkpoint-1"]
    config = TrainConfig(output_dir=tmp_path)
    assert find_resumable(config, "checkpoint").name == "checkpoint-1"


def test_the_finder_takes_the_highest_step_and_refuses_an_incomplete_one(tmp_path):
    model, optimizer, _ = trained_optimizer()
    for step in (9, 10):
        save(tmp_path, "checkpoint", TrainingState(step, step), optimizer, weights_of(model))
    assert latest(tmp_path, "checkpoint").name == "checkpoint-10"
    assert latest(tmp_path, "round") is None
    with pytest.raises(CheckpointError, match="checkpoint-10: missing trainer_state.json"):
        checkpoint_to_resume(TrainConfig(output_dir=tmp_path))  # TRL's: the same finder
    assert find_resumable(TrainConfig(output_dir=tmp_path, resume=False), "checkpoint") is None
    (tmp_path / "checkpoint-10" / RNG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint-10: missing value_head, rng_state"):
        find_resumable(TrainConfig(output_dir=tmp_path), "checkpoint", ("value_head",))


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("ppo_state.json", {"update": 2, "history": [{"kl": 0.1}, {"kl": 0.2}]}),
        ("online_dpo_state.json", {"rounds_done": 2, "history": [{"round": 1}, {"round": 2}]}),
    ],
)
def test_a_checkpoint_written_before_this_format_still_resumes(tmp_path, name, state):
    model, optimizer, _ = trained_optimizer()
    folder = save(tmp_path, "round", TrainingState(2, 2), optimizer, weights_of(model))
    (folder / STATE_FILE).unlink()
    (folder / name).write_text(json.dumps(state))
    verify(folder)
    assert read_state(folder) == TrainingState(2, 2, {"history": state["history"]})
    (folder / name).unlink()
    with pytest.raises(CheckpointError, match=f"missing {STATE_FILE}"):
        verify(folder)
