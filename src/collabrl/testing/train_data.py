"""Toy training rows in the export format, for tests and demos of the training recipes.

``collabrl export`` writes SFT rows (``{"messages": [...], "conversation_id"}``) and DPO pairs in
TRL's conversational preference format (``prompt`` = list of messages, ``chosen`` / ``rejected`` =
one assistant message each, plus ``conversation_id``, ``turn``, ``mr_chosen``, ``mr_rejected``).
These helpers build small rows of that shape from a few fixed turns, so a recipe can run a few
steps on the tiny model without generating data first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TURNS = [
    (
        "Write a short story about a robot who learns to paint.",
        "Could you tell me more about the audience, the tone and the length you have in mind?",
    ),
    (
        "The audience is children, please keep it short.",
        "Sure! Here is a first draft. Tell me what you would like to change.",
    ),
    (
        "What is the sum of 12 and 30?",
        "The answer is 42. Let me explain each step of the solution.",
    ),
    (
        "Please make the second paragraph shorter and more formal.",
        "Thanks, that helps a lot. I will revise it.",
    ),
]
REJECTED = "def largest(numbers): return max(numbers)"


def conversation(i: int, turns: int = 2) -> list[dict[str, str]]:
    """``turns`` (user, assistant) pairs starting at turn ``i`` of the fixed list."""
    messages = []
    for k in range(turns):
        user, assistant = TURNS[(i + k) % len(TURNS)]
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages


def sft_rows(n: int) -> list[dict[str, Any]]:
    return [{"messages": conversation(i, 1 + i % 2), "conversation_id": f"c{i}"} for i in range(n)]


def dpo_row(
    i: int,
    prompt: list[dict[str, str]] | None = None,
    chosen: str | None = None,
    rejected: str | None = None,
) -> dict[str, Any]:
    """Pair ``i``: by default the prompt is a short conversation and chosen its next reply."""
    messages = conversation(i, 1 + i % 2)
    return {
        "prompt": messages[:-1] if prompt is None else prompt,
        "chosen": [
            {"role": "assistant", "content": messages[-1]["content"] if chosen is None else chosen}
        ],
        "rejected": [{"role": "assistant", "content": REJECTED if rejected is None else rejected}],
        "conversation_id": f"c{i}",
        "turn": 1 + i % 2,
        "mr_chosen": 0.6,
        "mr_rejected": 0.2,
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_export(folder: Path, train_rows: int = 8, eval_rows: int = 2) -> Path:
    """An export folder with sft_{train,eval}.jsonl and dpo_{train,eval}.jsonl."""
    write_jsonl(folder / "sft_train.jsonl", sft_rows(train_rows))
    write_jsonl(folder / "sft_eval.jsonl", sft_rows(eval_rows))
    write_jsonl(folder / "dpo_train.jsonl", [dpo_row(i) for i in range(train_rows)])
    write_jsonl(folder / "dpo_eval.jsonl", [dpo_row(i) for i in range(eval_rows)])
    return folder
