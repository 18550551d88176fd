"""PPO's experience side: which prefixes each update trains on, sampling one reply per prefix
from the live policy, scoring it with the multiturn-aware reward (``collabrl.train.live_reward``,
the live policy as the future assistant, as in every online recipe), and turning the scored
replies into token tensors. The prefixes (with their tasks) come from ``collabrl.train.prefixes``.

Everything random here is seeded from ``(train.seed, update)``: the prefixes of an update, the
policy's reply to each one and the future-assistant samples inside MR. So an update depends only
on the weights it starts from, which is what lets a resumed run match a straight one. A reply
whose MR could not be computed keeps ``mr=None`` with its reason; the recipe leaves it out of the
update instead of treating it as a reward of 0.

A reply the length limit cut (``cut``) is encoded as it was sampled: its tokens, WITHOUT an
end-of-turn token (``encode``). That is right for PPO: the update is on-policy, so it may only
train the tokens the policy actually produced; appending an end-of-turn token it never sampled
would credit the reply's MR to stopping mid-sentence. The cut reply's own tokens still get its
MR (that is what the policy wrote), and the update counts its cut replies (``cut``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from collabrl.backends.errors import BackendError
from collabrl.train.live_reward import LiveReward, derived_seed
from collabrl.train.prefixes import Prefix, policy_prompt, prompt_ids
from collabrl.types import Message


@dataclass(frozen=True)
class ScoredReply:
    """The policy's reply to a prefix, the exact prompt it saw, and its MR (None: unscored)."""

    prefix: Prefix
    messages: tuple[dict[str, str], ...]
    reply: str
    finished: bool  # ended with the end-of-turn token (not cut by max_tokens)
    mr: float | None
    reason: str | None = None
    metric_means: dict[str, float | None] = field(default_factory=dict)  # per metric, over futures
    cut: bool = False  # the length limit cut it (finish reason "length")


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


async def collect_replies(
    live: LiveReward,
    tokenizer: Any,
    prefixes: list[Prefix],
    update: int,
) -> list[ScoredReply]:
    """One reply per prefix from the live policy (the live role's sampling settings), each
    scored with MR, in prefix order (``BudgetExceeded`` at a cap of ``live``'s budget).

    The prompt is the assistant's view of the prefix, its oldest messages dropped to leave
    ``max_tokens`` of ``train.max_length`` for the reply (a prefix that cannot fit is skipped
    with the reason ``prompt_too_long``). Call it on ``live``'s loop (``live.run``)."""
    config = live.config
    seed = config.train.seed
    live.reseed(update)
    params = live.generation.model_copy(update={"n": 1, "seed": derived_seed(seed, update, 0)})
    room = config.train.max_length - params.max_tokens
    system_prompt = config.assistant.system_prompt

    async def one(index: int, prefix: Prefix) -> ScoredReply:
        prompt = policy_prompt(prefix, system_prompt, tokenizer, room)
        if prompt is None:
            return ScoredReply(prefix, (), "", False, None, "prompt_too_long")
        messages = [Message(**m) for m in prompt]
        try:
            [completion] = await live.policy.generate(
                messages, params.model_copy(update={"first_sample": index})
            )
        except BackendError as error:
            return ScoredReply(
                prefix, tuple(prompt), "", False, None, f"policy_error:{error.reason}"
            )
        reply = completion.text
        [scored] = await live.score_replies(prefix, [reply])
        reason = None if scored.scored else _reasons(scored.samples)
        finished = completion.finish_reason == "stop"
        return ScoredReply(
            prefix,
            tuple(prompt),
            reply,
            finished,
            scored.mr,
            reason,
            scored.metric_means,
            cut=completion.cut,
        )

    return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prefixes))))


def _reasons(samples) -> str:
    return "; ".join(sorted({s.reason or "unscored" for s in samples})) or "no_future_sampled"


def encode(
    tokenizer: Any, scored: ScoredReply, eos_id: int, max_length: int
) -> tuple[list[int], list[int]]:
    """(prompt ids, reply ids) as the policy saw and wrote them: the reply is re-tokenised from
    its text (the backend returns text) and keeps the end-of-turn token when it ended by itself
    (an empty reply is that token alone); a cut reply gets none, so PPO never teaches stopping
    there (module docstring). It is cut to fit ``max_length`` after the prompt."""
    prompt = prompt_ids(tokenizer, list(scored.messages))
    reply = tokenizer(scored.reply, add_special_tokens=False)["input_ids"]
    reply = reply + [eos_id] if scored.finished or not reply else reply
    return prompt, reply[: max(1, max_length - len(prompt))]


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
