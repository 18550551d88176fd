"""The multiturn-aware reward (MR) of fresh replies, with the policy being trained as the future
assistant: the one way every online recipe (online DPO, GRPO/RLOO, PPO) scores its samples.

The paper: during online training the future assistant inside MR is the policy itself, so a
reply is judged by how the conversation goes when the *current* weights carry it on. Here:

- ``live_policy_backend``: an ``HFLocalBackend`` over the model being trained (batching settings
  from the future assistant's role when it is an ``hf_local`` one), so every sample comes from
  the weights as they are now;
- ``LiveReward``: ``Roles``/``build_reward`` with that backend bound to
  ``reward.future_assistant_role`` (added as an ``hf_local`` role on ``train.model`` when the
  config lacks it: the entry only supplies sampling settings and limits, never the model). The
  role is never cached (the weights change). It owns one event loop, so synchronous code (TRL's
  reward function, a round or update loop) can call it; inside, all replies, futures and judges
  run concurrently. ``reseed(unit)`` seeds the future assistant's samples for one unit of
  training (online DPO's round, PPO's update, GRPO's step) from ``(train.seed, unit)``, which is
  what lets a resumed run repeat a straight one. A reply whose MR
  could not be computed gets ``None`` and is counted, never 0. With a budget, every role's calls
  (the live policy's too: tokens and requests, no money without a price) pass its guard, which
  raises ``BudgetExceeded`` at a cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import numpy as np

from collabrl.assembly import build_reward
from collabrl.backends.base import Backend
from collabrl.backends.stack import Roles
from collabrl.budget import Budget
from collabrl.config import Config, HFLocalBackendConfig
from collabrl.reward import CandidateReward
from collabrl.train.prefixes import Prefix
from collabrl.types import GenerationParams

T = TypeVar("T")
FUTURES_STREAM = 1  # derived_seed's stream of the future assistant's samples


def derived_seed(seed: int, unit: int, stream: int) -> int:
    """An independent 31-bit seed for one random stream of one unit of training."""
    return int(np.random.SeedSequence([seed, unit, stream]).generate_state(1)[0] >> 1)


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


class LiveReward:
    """MR of replies to prefixes, the live ``policy`` playing the future assistant.

    Use as a context manager (it owns an event loop and the run's backends). ``score`` gives the
    full ``CandidateReward``s, ``rewards`` one ``float | None`` per reply (TRL's reward shape),
    ``score_replies`` the same for one prefix inside the loop. ``scored`` and ``unscored``
    count the replies seen so far; ``roles.meter`` holds every role's usage.
    """

    def __init__(self, config: Config, policy: Backend, budget: Budget | None = None) -> None:
        self.config = with_live_policy_role(config)
        self.role = self.config.reward.future_assistant_role
        self._loop = asyncio.new_event_loop()
        self.roles = Roles(self.config, models={self.role: policy}, budget=budget)
        try:
            self.reward = build_reward(self.config, self.roles)
        except BaseException:
            self.close()
            raise
        self.scored = 0
        self.unscored = 0

    @property
    def policy(self) -> Backend:
        """The live policy behind the role's limits, budget and accounting (never cached)."""
        return self.roles[self.role]

    @property
    def generation(self) -> GenerationParams:
        """The live role's sampling settings (temperature, max_tokens, ...)."""
        return self.config.role(self.role).generation

    def reseed(self, unit: int) -> None:
        """Seed the future assistant's samples for unit ``unit`` of training (from now on)."""
        seed = derived_seed(self.config.train.seed, unit, FUTURES_STREAM)
        generation = self.generation.model_copy(update={"seed": seed})
        entry = self.config.roles[self.role].model_copy(update={"generation": generation})
        seeded = self.config.model_copy(update={"roles": {**self.config.roles, self.role: entry}})
        self.reward = build_reward(seeded, self.roles)

    def run(self, work: Awaitable[T]) -> T:
        """Run ``work`` on this reward's loop (where the live policy's batcher lives)."""
        return self._loop.run_until_complete(work)

    async def score_replies(self, prefix: Prefix, replies: Sequence[str]) -> list[CandidateReward]:
        """MR of each reply to ``prefix`` (counted in ``scored``/``unscored``)."""
        results = await self.reward.score(prefix.task, prefix.conversation, list(replies))
        self.scored += sum(r.mr is not None for r in results)
        self.unscored += sum(r.mr is None for r in results)
        return results

    def score(self, groups: Sequence[tuple[Prefix, Sequence[str]]]) -> list[list[CandidateReward]]:
        """MR of each group's replies to its prefix; all groups concurrently."""

        async def all_groups() -> list[list[CandidateReward]]:
            return list(await asyncio.gather(*(self.score_replies(p, r) for p, r in groups)))

        return self.run(all_groups())

    def rewards(self, prefixes: Sequence[Prefix], replies: Sequence[str]) -> list[float | None]:
        """MR of ``replies[i]`` as the answer to ``prefixes[i]``; None where it is unscored.
        Replies to the same prefix are scored as one group."""
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

    def __enter__(self) -> LiveReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
