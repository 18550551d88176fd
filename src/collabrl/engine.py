"""The data engine: scored multi-turn conversations, the raw material of every training recipe.

For each task: the simulated user opens; at each assistant turn the policy samples k candidate
replies (a share of them with the proactive system prompt, for diversity); the multiturn-aware
reward scores every candidate; the conversation continues with the best one, and the next user
message is taken from that candidate's first sampled future (the user already said it there),
until the user ends the chat or the turn cap is reached.

Output, in ``output_dir``: ``turns.jsonl`` (one record per scored turn: prefix, candidates, MR,
per-metric means, per-sample rewards and, optionally, the futures) and ``conversations.jsonl``
(one record per conversation, ``ok`` or ``failed`` with its reason), appended as they finish,
plus ``manifest.json``. Resumable: a rerun skips finished conversations and replays unfinished
ones through the response cache, appending only turn records it does not have yet, so a kill -9
costs no repeated request, no duplicate and no broken line. Conversations run concurrently
(bounded, so memory stays flat); a failure rate over the threshold stops the run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from collabrl.aio import map_bounded
from collabrl.backends.errors import BackendError
from collabrl.config import GenerateConfig
from collabrl.records import JsonlAppender, file_manifest, read_jsonl, write_manifest
from collabrl.reward import CandidateReward, MultiturnReward
from collabrl.rollout import Policy
from collabrl.simulator import UserSimulator
from collabrl.types import Conversation, Message, Task

TURNS_FILE = "turns.jsonl"
CONVERSATIONS_FILE = "conversations.jsonl"


class EngineStopped(RuntimeError):
    """The run stopped early (too many failures); what was written is kept."""


class CandidateRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    source: Literal["policy", "proactive"]
    mr: float | None
    stderr: float | None
    metric_means: dict[str, float | None]
    sample_rewards: list[float | None]
    unscored: int
    reasons: list[str | None]
    futures: list[dict[str, Any]] | None = None


class TurnRecord(BaseModel):
    """One assistant turn: the prefix it answers, every candidate with its MR, the choice."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    task_id: str
    turn: int
    prefix: list[Message]
    candidates: list[CandidateRecord]
    chosen: int | None

    @property
    def key(self) -> tuple[str, int]:
        return (self.conversation_id, self.turn)


class ConversationRecord(BaseModel):
    """A finished conversation (the best path), or why it failed."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    task_id: str
    status: Literal["ok", "failed"]
    ended: str
    reason: str | None = None
    turns: int
    messages: list[Message]


class _Failed(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def candidate_record(reward: CandidateReward, source: str, keep_futures: bool) -> CandidateRecord:
    return CandidateRecord(
        text=reward.reply, source=source, mr=reward.mr, stderr=reward.stderr,
        metric_means=reward.metric_means,
        sample_rewards=[s.reward for s in reward.samples],
        unscored=reward.unscored,
        reasons=[s.reason for s in reward.samples],
        futures=[s.model_dump(mode="json") for s in reward.samples] if keep_futures else None,
    )


def best_candidate(rewards: list[CandidateReward]) -> int | None:
    """Index of the highest MR (the first on ties), or None if no candidate was scored."""
    scored = [(r.mr, -i) for i, r in enumerate(rewards) if r.mr is not None]
    return -max(scored)[1] if scored else None


class DataEngine:
    """Builds scored conversations for tasks; see the module docstring."""

    def __init__(
        self,
        config: GenerateConfig,
        *,
        user: UserSimulator,
        policy: Policy,
        proactive: Policy,
        reward: MultiturnReward,
    ) -> None:
        self.config = config
        self.user = user
        self.policy = policy
        self.proactive = proactive
        self.reward = reward
        self.outcomes: Counter[str] = Counter()
        self.failure_reasons: Counter[str] = Counter()

    async def run(
        self, tasks: Iterable[Task], output_dir: Path, on_done: Callable[[ConversationRecord], None] | None = None
    ) -> Counter[str]:
        """Build conversations for ``tasks`` not yet finished in ``output_dir``; return outcomes."""
        output_dir.mkdir(parents=True, exist_ok=True)
        turns_path, convs_path = output_dir / TURNS_FILE, output_dir / CONVERSATIONS_FILE
        finished = {r["conversation_id"] for r in _existing(convs_path)}
        written = {(r["conversation_id"], r["turn"]) for r in _existing(turns_path)}
        todo = (t for t in tasks if t.id not in finished)
        with JsonlAppender(turns_path) as turns_out, JsonlAppender(convs_path) as convs_out:

            def write_turn(record: TurnRecord) -> None:
                if record.key not in written:
                    written.add(record.key)
                    turns_out.append(record)

            async def one(task: Task) -> None:
                record = await self.conversation(task, write_turn)
                convs_out.append(record)
                self._count(record)
                if on_done is not None:
                    on_done(record)

            await map_bounded(one, todo, self.config.conversations_in_flight)
        write_manifest(output_dir, [file_manifest(turns_path), file_manifest(convs_path)],
                       command="generate")
        return self.outcomes

    def _count(self, record: ConversationRecord) -> None:
        self.outcomes[record.status] += 1
        if record.reason:
            self.failure_reasons[record.reason] += 1
        done = self.outcomes["ok"] + self.outcomes["failed"]
        rate = self.outcomes["failed"] / done
        if done >= self.config.min_conversations_for_failure_rate and rate > self.config.max_failure_rate:
            common = ", ".join(f"{k} x{v}" for k, v in self.failure_reasons.most_common(3))
            raise EngineStopped(
                f"stopping: {self.outcomes['failed']} of {done} conversations failed "
                f"({rate:.0%} > generate.max_failure_rate={self.config.max_failure_rate:.0%}); "
                f"most common reasons: {common}. Records written so far are kept; fix the cause "
                f"and rerun to resume."
            )

    async def conversation(self, task: Task, write_turn: Callable[[TurnRecord], None]) -> ConversationRecord:
        conversation = Conversation()
        try:
            opening = await self.user.next_turn(task, conversation)
            if opening.failure or opening.terminated or not opening.message:
                raise _Failed(opening.failure or "user_ended_before_asking")
            conversation = conversation.append("user", opening.message)
            for turn in range(self.config.max_turns):
                conversation, ended = await self._turn(task, conversation, turn, write_turn)
                if ended:
                    return self._record(task, conversation, "ok", "user_terminated")
            return self._record(task, conversation, "ok", "turn_limit")
        except _Failed as failure:
            return self._record(task, conversation, "failed", "failed", failure.reason)

    def _record(self, task: Task, conversation: Conversation, status, ended: str,
                reason: str | None = None) -> ConversationRecord:
        return ConversationRecord(
            conversation_id=task.id, task_id=task.id, status=status, ended=ended, reason=reason,
            turns=len(conversation.turns("assistant")), messages=list(conversation.messages),
        )

    async def _turn(self, task: Task, conversation: Conversation, turn: int,
                    write_turn: Callable[[TurnRecord], None]) -> tuple[Conversation, bool]:
        """Score candidates for one assistant turn; returns the longer conversation and ended."""
        candidates = await self._candidates(conversation)
        rewards = await self.reward.score(task, conversation, [text for text, _ in candidates])
        chosen = best_candidate(rewards)
        write_turn(TurnRecord(
            conversation_id=task.id, task_id=task.id, turn=turn,
            prefix=list(conversation.messages), chosen=chosen,
            candidates=[candidate_record(r, source, self.config.keep_futures)
                        for r, (_, source) in zip(rewards, candidates)],
        ))
        if chosen is None:
            raise _Failed("no_candidate_scored")
        conversation = conversation.append("assistant", rewards[chosen].reply)
        next_message = await self._next_user_message(task, conversation, rewards[chosen])
        if next_message is None:
            return conversation, True
        return conversation.append("user", next_message), False

    async def _candidates(self, conversation: Conversation) -> list[tuple[str, str]]:
        """k distinct, non-empty replies, each tagged with the prompt that produced it."""
        k = self.config.candidates
        k_pro = round(k * self.config.proactive_share)
        requests = [(self.policy, k - k_pro, "policy"), (self.proactive, k_pro, "proactive")]
        try:
            batches = await asyncio.gather(*(
                policy.reply(conversation, n=n) for policy, n, _ in requests if n
            ))
        except BackendError as error:
            raise _Failed(f"policy_error:{error.reason}") from None
        sources = [source for _, n, source in requests if n]
        seen, out = set(), []
        for batch, source in zip(batches, sources):
            for completion in batch:
                text = completion.text.strip()
                if text and text not in seen:
                    seen.add(text)
                    out.append((text, source))
        if not out:
            raise _Failed("policy_empty_replies")
        return out

    async def _next_user_message(self, task: Task, conversation: Conversation,
                                 chosen: CandidateReward) -> str | None:
        """The user's next message, from the chosen candidate's futures; None if the user ended."""
        for sample in chosen.samples:
            future = sample.future
            if future.ended == "user_terminated" and len(future.added) == 0:
                return None
            added = future.added.messages
            if added and added[0].role == "user":
                return added[0].content
        turn = await self.user.next_turn(task, conversation)  # window 0 or every future failed
        if turn.failure:
            raise _Failed(turn.failure)
        return None if turn.terminated else turn.message


def _existing(path: Path) -> Iterable[dict[str, Any]]:
    return read_jsonl(path) if path.exists() else ()
