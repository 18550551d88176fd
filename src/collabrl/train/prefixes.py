"""Conversation prefixes for the online recipes (online DPO, GRPO/RLOO, PPO).

Online methods do not train on stored replies: they take the conversation prefixes the data
engine recorded (each one ends with a user message and belongs to a task), let the *current*
policy answer them, and score the answers with MR (``collabrl.train.live_reward``). This module
holds what every recipe needs of the prefixes:

- ``load_prefixes``: the prefixes of a ``collabrl generate`` output folder with their tasks, in a
  deterministic order shuffled with ``train.seed`` (the same list on every run and on resume);
- ``policy_prompt``: what the policy sees for a prefix (the assistant's system prompt, then the
  prefix), with the oldest messages dropped until it fits a token budget, and ``prompt_ids``
  the tokens it is given for such a prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collabrl.assembly import build_personas
from collabrl.config import Config, ConfigError
from collabrl.engine import TURNS_FILE
from collabrl.personas import cast
from collabrl.records import read_jsonl
from collabrl.tasks.registry import generation_tasks
from collabrl.types import Conversation, Message, Task


@dataclass(frozen=True)
class Prefix:
    """A conversation prefix (ending with a user message) from a generate run, with its task."""

    conversation_id: str
    turn: int
    task: Task
    conversation: Conversation

    @property
    def key(self) -> tuple[str, int]:
        return (self.conversation_id, self.turn)


def load_prefixes(config: Config, folder: Path) -> list[Prefix]:
    """Every prefix of ``folder/turns.jsonl``, sorted by key then shuffled with ``train.seed``.

    Tasks come from the config's ``generate`` section (``generation_tasks``), which must name the
    tasks of that run; a prefix whose task is unknown is an error, not silently skipped. With
    ``user.personas`` each task plays the persona its generate conversation had (seed 0), so the
    live futures' user is the same person.
    """
    path = Path(folder) / TURNS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `collabrl generate` first")
    personas = build_personas(config)
    tasks = {task.id: cast(task, personas, 0) for task in generation_tasks(config)}
    found: dict[tuple[str, int], Prefix] = {}
    missing: set[str] = set()
    for record in read_jsonl(path):
        conversation = Conversation(messages=tuple(Message(**m) for m in record["prefix"]))
        if conversation.last is None or conversation.last.role != "user":
            raise ValueError(
                f"{path}: {record['conversation_id']} turn {record['turn']}: the "
                f"prefix must end with a user message"
            )
        task = tasks.get(record["task_id"])
        if task is None:
            missing.add(record["task_id"])
            continue
        prefix = Prefix(record["conversation_id"], record["turn"], task, conversation)
        found.setdefault(prefix.key, prefix)
    if missing:
        raise ConfigError(
            f"{len(missing)} task ids of {path} are not among the tasks the "
            f"generate section names (e.g. {sorted(missing)[0]!r}); point "
            f"generate.tasks at the tasks of that run"
        )
    if not found:
        raise ValueError(f"{path} holds no conversation prefixes")
    prefixes = [found[key] for key in sorted(found)]
    random.Random(config.train.seed).shuffle(prefixes)
    return prefixes


def policy_prompt(
    prefix: Prefix, system_prompt: str | None, tokenizer: Any, budget: int
) -> list[dict[str, str]] | None:
    """The policy's view of ``prefix`` in at most ``budget`` prompt tokens, or None if even the
    last user message does not fit. The oldest messages go first; it still starts with a user
    message (after the system prompt), as chat templates expect."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages = prefix.conversation.to_openai()
    while messages:
        prompt = system + messages
        if prompt_tokens(tokenizer, prompt) <= budget:
            return prompt
        messages = messages[1:]
        while messages and messages[0]["role"] != "user":
            messages = messages[1:]
    return None


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The tokens the policy is given for ``messages`` (chat template + generation prompt)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """How many tokens ``prompt_ids`` gives for ``messages``."""
    return len(prompt_ids(tokenizer, messages))
