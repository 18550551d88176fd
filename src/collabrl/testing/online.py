"""A small ``collabrl generate`` run on disk and a config for the online recipes, for tests.

GRPO and online DPO read conversation prefixes from a generate output folder and score replies
with MR. ``write_generate_run`` writes such a folder (``tasks.jsonl`` plus ``generate/turns.jsonl``
with a few prefixes per conversation) without running the engine; ``online_config`` binds the
policy to a local model folder (the tiny random model in tests), the user and the judge to
scripted replies, and MR to token efficiency (which varies with the reply) plus interactivity,
so every reward is deterministic for given replies and quick to compute. The tiny random model
almost never ends a reply by itself, so the config trains on cut replies like finished ones
(``cut_replies``: ``as_complete`` / ``trained``, not the defaults) to keep the recipes training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collabrl.config import Config
from collabrl.types import Task

USER_REPLY = '{"thought": "t", "message": "tell me more about it", "terminate": false}'
JUDGE_REPLY = "The assistant engaged.\nGRADE $call_id: 3"  # ScriptedBackend fills in the id


def tasks(count: int) -> list[Task]:
    return [
        Task(
            id=f"task-{i}",
            description="write a short text",
            intent=f"Write two lines about topic number {i}.",
        )
        for i in range(count)
    ]


def write_generate_run(folder: Path, conversations: int = 3, turns: int = 2) -> Path:
    """``folder/tasks.jsonl`` and ``folder/generate/turns.jsonl``; returns the generate folder."""
    folder.mkdir(parents=True, exist_ok=True)
    items = tasks(conversations)
    (folder / "tasks.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in items))
    output = folder / "generate"
    output.mkdir(exist_ok=True)
    lines = []
    for task in items:
        prefix: list[dict[str, str]] = []
        for turn in range(turns):
            prefix = [*prefix, {"role": "user", "content": f"help with {task.id}, part {turn}"}]
            record = {
                "conversation_id": task.id,
                "task_id": task.id,
                "turn": turn,
                "prefix": prefix,
                "candidates": [],
                "chosen": None,
            }
            lines.append(json.dumps(record) + "\n")
            prefix = [*prefix, {"role": "assistant", "content": f"answer {turn} for {task.id}"}]
    (output / "turns.jsonl").write_text("".join(lines))
    return output


def online_config(folder: Path, model: Path, **train: Any) -> Config:
    """A config for GRPO / online DPO over ``write_generate_run(folder)`` and the model folder
    ``model``; ``train`` overrides entries of the ``train`` section (nested dicts merge)."""
    generate = folder / "generate"
    section: dict[str, Any] = {
        "model": str(model),
        "output_dir": str(folder / "out"),
        "dtype": "float32",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_length": 256,
        "seed": 0,
        "save_steps": 1,
        "logging_steps": 1,
        "online_dpo": {
            "prefixes": str(generate),
            "rounds": 2,
            "prefixes_per_round": 3,
            "candidates": 2,
            "min_gap": 0.0,
            "learning_rate": 1e-2,
            "max_completion_length": 8,
            # the tiny random model's replies are almost all cut: the default would pair none
            "cut_replies": "as_complete",
        },
        "grpo": {
            "prefixes": str(generate),
            "candidates": 2,
            "learning_rate": 1e-2,
            "max_completion_length": 8,
            "epochs": 1.0,
            # the tiny random model's replies are almost all cut: the default would mask them all
            "cut_replies": "trained",
        },
    }
    for key, value in train.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return Config.model_validate(
        {
            "roles": {
                "policy": {
                    "kind": "hf_local",
                    "model": str(model),
                    "max_wait_ms": 5,
                    "generation": {"temperature": 1.0, "max_tokens": 6, "seed": 11},
                },
                "user": {"kind": "scripted", "replies": [USER_REPLY]},
                "judge": {"kind": "scripted", "replies": [JUDGE_REPLY]},
            },
            "cache": {"enabled": False},
            # A random tiny model never ends a reply itself: its futures are cut, and scored as such.
            "reward": {
                "samples": 2,
                "window": 1,
                "cut_futures": "scored",
                "metrics": [
                    {"name": "token_efficiency", "weight": 1.0, "options": {"lam": 0.02}},
                    {"name": "interactivity", "weight": 1.0, "options": {"max_reasks": 0}},
                ],
            },
            "generate": {"tasks": {"path": str(folder / "tasks.jsonl")}},
            "train": section,
        }
    )


def ppo_config(
    folder: Path,
    model: Path,
    output: str = "out",
    dropout: float = 0.0,
    save_steps: int = 1,
    **ppo: Any,
) -> Config:
    """``online_config`` for PPO: outputs in ``folder/output``; 4 rollouts per update, 2 updates
    of 2 epochs, micro-batches of 2 (so accumulation and shuffling are exercised) and a large
    learning rate, so one update visibly moves the weights; ``ppo`` overrides the section."""
    settings = {
        "prefixes": str(folder / "generate"),
        "rollouts": 4,
        "updates": 2,
        "epochs": 2,
        "learning_rate": 1e-2,
        **ppo,
    }
    return online_config(
        folder,
        model,
        output_dir=str(folder / output),
        per_device_batch_size=2,
        save_steps=save_steps,
        lora={"dropout": dropout},
        ppo=settings,
    )
