"""PPO's experience side: which prefixes each update trains on, sampling replies from the live
policy, scoring them with the multiturn-aware reward, and turning them into token tensors.
The prefixes (with their tasks) come from ``collabrl.train.prefixes``, shared with the other
online recipes.

Everything random here is seeded from ``(train.seed, update)``: the prefixes of an update, the
policy's reply to each one and the future-assistant samples inside MR. So an update depends only
on the weights it starts from, which is what lets a resumed run match a straight one. Futures use
the live policy when ``reward.future_assistant_role`` is ``policy`` (never cached: the weights
change). A reply whose MR could not be computed keeps ``mr=None`` with its reason; the recipe
leaves it out of the update instead of treating it as a reward of 0.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from collabrl.assembly import build_assistant, build_reward
from collabrl.backends.errors import BackendError
from collabrl.backends.hf_local import HFLocalBackend
from collabrl.backends.stack import Roles
from collabrl.budget import Budget
from collabrl.config import Config, HFLocalBackendConfig
from collabrl.train.prefixes import Prefix, policy_prompt
from collabrl.types import Message

POLICY_ROLE = "policy"


@dataclass(frozen=True)
class Rollout:
    """The policy's reply to a prefix, the exact prompt it saw, and its MR (None: unscored)."""

    prefix: Prefix
    messages: tuple[dict[str, str], ...]
    reply: str
    finished: bool  # ended with the end-of-turn token (not cut by max_tokens)
    mr: float | None
    reason: str | None = None


def derived_seed(seed: int, update: int, stream: int) -> int:
    """An independent 31-bit seed for one random stream of one update."""
    return int(np.random.SeedSequence([seed, update, stream]).generate_state(1)[0] >> 1)


def update_prefixes(prefixes: list[Prefix], update: int, count: int, seed: int) -> list[Prefix]:
    """The ``count`` prefixes of update ``update``: passes over a fresh permutation each time."""
    orders: dict[int, np.ndarray] = {}
    chosen = []
    for k in range(update * count, (update + 1) * count):
        epoch, position = divmod(k, len(prefixes))
        if epoch not in orders:
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(len(prefixes))
        chosen.append(prefixes[orders[epoch][position]])
    return chosen


def rollout_config(config: Config, update: int) -> Config:
    """``config`` with a ``policy`` role (added if missing) whose samples are seeded for this
    update, so the live policy's future-assistant turns are reproducible."""
    roles = dict(config.roles)
    policy = roles.get(POLICY_ROLE)
    if policy is None:  # only its sampling settings and limits are used: the model is live
        policy = HFLocalBackendConfig(kind="hf_local", model=config.train.model)
    seed = derived_seed(config.train.seed, update, 1)
    generation = policy.generation.model_copy(update={"seed": seed})
    roles[POLICY_ROLE] = policy.model_copy(update={"generation": generation})
    return config.model_copy(update={"roles": roles})


async def collect_rollouts(
    config: Config,
    model: Any,
    tokenizer: Any,
    prefixes: list[Prefix],
    update: int,
    budget: Budget | None = None,
) -> list[Rollout]:
    """One reply per prefix from the live ``model``, each scored with MR, in prefix order;
    every role behind ``budget``'s guard when given (``BudgetExceeded`` at a cap).

    The prompt is the assistant's view of the prefix, its oldest messages dropped to leave
    ``max_tokens`` of ``train.max_length`` for the reply (a prefix that cannot fit is skipped
    with the reason ``prompt_too_long``)."""
    seeded = rollout_config(config, update)
    role = seeded.roles[POLICY_ROLE]
    live = HFLocalBackend(
        model,
        tokenizer,
        max_batch_size=getattr(role, "max_batch_size", 16),
        name=f"live:{config.train.model}",
    )
    async with Roles(seeded, models={POLICY_ROLE: live}, budget=budget) as roles:
        assistant = build_assistant(seeded, roles, POLICY_ROLE)
        reward = build_reward(seeded, roles)
        params = assistant.params.model_copy(
            update={"n": 1, "seed": derived_seed(config.train.seed, update, 0)}
        )
        budget = config.train.max_length - params.max_tokens

        async def one(index: int, prefix: Prefix) -> Rollout:
            prompt = policy_prompt(prefix, assistant.system_prompt, tokenizer, budget)
            if prompt is None:
                return Rollout(prefix, (), "", False, None, "prompt_too_long")
            messages = [Message(**m) for m in prompt]
            try:
                [completion] = await assistant.backend.generate(
                    messages, params.model_copy(update={"first_sample": index})
                )
            except BackendError as error:
                return Rollout(
                    prefix, tuple(prompt), "", False, None, f"policy_error:{error.reason}"
                )
            reply = completion.text
            scored = await reward.score_one(prefix.task, prefix.conversation, reply)
            reason = None if scored.scored else _reasons(scored.samples)
            return Rollout(
                prefix, tuple(prompt), reply, completion.finish_reason == "stop", scored.mr, reason
            )

        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prefixes))))


def _reasons(samples) -> str:
    return "; ".join(sorted({s.reason or "unscored" for s in samples})) or "no_future_sampled"


def encode(
    tokenizer: Any, rollout: Rollout, eos_id: int, max_length: int
) -> tuple[list[int], list[int]]:
    """(prompt ids, reply ids) as the policy saw and wrote them: the reply is re-tokenised from
    its text (the backend returns text) and keeps the end-of-turn token when it ended by itself
    (an empty reply is that token alone); it is cut to fit ``max_length`` after the prompt."""
    prompt = prompt_ids(tokenizer, list(rollout.messages))
    reply = tokenizer(rollout.reply, add_special_tokens=False)["input_ids"]
    reply = reply + [eos_id] if rollout.finished or not reply else reply
    return prompt, reply[: max(1, max_length - len(prompt))]


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The tokens the policy is given for ``messages`` (chat template + generation prompt)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class Batch:
    """Prompts left-padded and replies right-padded to one width each, so that every row's reply
    starts at the same column and only the reply positions need logits."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    mask: torch.Tensor  # [batch, reply width]: 1 on reply tokens

    @property
    def reply_width(self) -> int:
        return self.mask.shape[1]


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int, device: Any) -> Batch:
    prompt_width = max(len(p) for p, _ in pairs)
    reply_width = max(len(r) for _, r in pairs)
    ids = torch.full((len(pairs), prompt_width + reply_width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, (prompt, reply) in enumerate(pairs):
        start, end = prompt_width - len(prompt), prompt_width + len(reply)
        ids[i, start:end] = torch.tensor(prompt + reply)
        attention[i, start:end] = 1
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    mask = attention[:, prompt_width:].float()
    return Batch(ids.to(device), attention.to(device), positions.to(device), mask.to(device))
