"""Conversation prefixes and the multiturn-aware reward for the online recipes (GRPO, online DPO).

Online methods do not train on stored replies: they take the conversation prefixes the data
engine recorded (each one ends with a user message and belongs to a task), let the *current*
policy answer them, and score the answers with MR. This module holds the parts both recipes need:

- ``load_prefixes``: the prefixes of a ``collabrl generate`` output folder with their tasks, in a
  deterministic order shuffled with ``train.seed`` (the same list on every run and on resume);
- ``policy_prompt``: what the policy sees for a prefix (the assistant's system prompt, then the
  prefix), with the oldest messages dropped until it fits a token budget;
- ``live_policy_backend``: an ``HFLocalBackend`` over the model being trained, so every sample
  (and every future assistant turn inside MR) comes from the weights as they are *now*;
- ``MRScorer``: MR through ``Roles``/``build_reward`` with the live policy bound to
  ``reward.future_assistant_role`` (the paper: during online training the future assistant is
  the policy itself). It owns one event loop, so synchronous code (TRL's reward function, a
  round loop) can call it; inside, all candidates, futures and judges run concurrently.
  A reply whose MR could not be computed gets ``None`` and is counted, never 0. With a budget,
  every role's calls (the live policy's too: tokens and requests, no money without a price)
  pass its guard, which raises ``BudgetExceeded`` at a cap.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from collabrl.assembly import build_personas, build_reward
from collabrl.backends.base import Backend
from collabrl.backends.stack import Roles
from collabrl.budget import Budget
from collabrl.config import Config, ConfigError, HFLocalBackendConfig
from collabrl.engine import TURNS_FILE
from collabrl.personas import cast
from collabrl.records import read_jsonl
from collabrl.reward import CandidateReward
from collabrl.tasks.registry import generation_tasks
from collabrl.types import Conversation, Message, Task

T = TypeVar("T")


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


def prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of ``messages`` rendered with the generation prompt, as the policy receives them."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def live_policy_backend(config: Config, model: Any, tokenizer: Any) -> Backend:
    """An ``HFLocalBackend`` over the model being trained (batching settings from the future
    assistant's role when it is an ``hf_local`` one)."""
    from collabrl.backends.hf_local import HFLocalBackend

    role = config.roles.get(config.reward.future_assistant_role)
    batching = {}
    if isinstance(role, HFLocalBackendConfig):
        batching = {"max_batch_size": role.max_batch_size, "max_wait_ms": role.max_wait_ms}
    return HFLocalBackend(model, tokenizer, name=f"live:{config.train.model}", **batching)


def with_live_policy_role(config: Config) -> Config:
    """``config`` with a ``reward.future_assistant_role`` entry (an ``hf_local`` one naming
    ``train.model``) when it has none: the entry only supplies sampling settings and limits,
    the backend behind it is always the live policy."""
    role = config.reward.future_assistant_role
    if role in config.roles:
        return config
    entry = HFLocalBackendConfig(kind="hf_local", model=config.train.model)
    return config.model_copy(update={"roles": {**config.roles, role: entry}})


class MRScorer:
    """MR of replies to prefixes, the live policy playing the future assistant.

    Use as a context manager (it owns an event loop and the run's backends); with ``budget``,
    every role (the live policy too) is behind its guard. ``score`` gives the
    full ``CandidateReward``s, ``rewards`` one ``float | None`` per reply (TRL's reward shape).
    ``scored`` and ``unscored`` count the replies seen so far.
    """

    def __init__(self, config: Config, policy: Backend, budget: Budget | None = None) -> None:
        config = with_live_policy_role(config)
        self.policy_role = config.reward.future_assistant_role
        self._loop = asyncio.new_event_loop()
        self.roles = Roles(config, models={self.policy_role: policy}, budget=budget)
        try:
            self.reward = build_reward(config, self.roles)
        except BaseException:
            self.close()
            raise
        self.scored = 0
        self.unscored = 0

    @property
    def policy(self) -> Backend:
        """The live policy behind the role's limits and accounting (never cached)."""
        return self.roles[self.policy_role]

    def run(self, work: Awaitable[T]) -> T:
        """Run ``work`` on this scorer's loop (where the live policy's batcher lives)."""
        return self._loop.run_until_complete(work)

    def score(self, groups: Sequence[tuple[Prefix, Sequence[str]]]) -> list[list[CandidateReward]]:
        """MR of each group's replies to its prefix; all groups concurrently."""

        async def all_groups() -> list[list[CandidateReward]]:
            return list(
                await asyncio.gather(
                    *(self.reward.score(p.task, p.conversation, list(r)) for p, r in groups)
                )
            )

        results = self.run(all_groups())
        for group in results:
            self.scored += sum(r.mr is not None for r in group)
            self.unscored += sum(r.mr is None for r in group)
        return results

    def rewards(self, prefixes: Sequence[Prefix], replies: Sequence[str]) -> list[float | None]:
        """MR of ``replies[i]`` as the answer to ``prefixes[i]``; None where it is unscored."""
        if len(prefixes) != len(replies):
            raise ValueError(f"{len(prefixes)} prefixes for {len(replies)} replies")
        positions: dict[tuple[str, int], list[int]] = {}
        for i, prefix in enumerate(prefixes):
            positions.setdefault(prefix.key, []).append(i)
        groups = [(prefixes[idx[0]], [replies[i] for i in idx]) for idx in positions.values()]
        out: list[float | None] = [None] * len(replies)
        for idx, scored in zip(positions.values(), self.score(groups)):
            for i, reward in zip(idx, scored):
                out[i] = reward.mr
        return out

    def close(self) -> None:
        try:
            self.run(self.roles.aclose())
        finally:
            self._loop.close()

    def __enter__(self) -> MRScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
