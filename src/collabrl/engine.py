"""The data engine: scored multi-turn conversations, the raw material of every training recipe.

For each task: the simulated user opens; at each assistant turn the policy samples k candidate
replies (a share of them with the proactive system prompt, for diversity); the multiturn-aware
reward scores every candidate; the conversation continues with the best one, and the next user
message is taken from that candidate's first sampled future (the user already said it there),
until the user ends the chat or the turn cap is reached.

Each conversation samples its candidates at its own sample indices, ``candidate_offset(task.id)``
.. + k - 1 (a stable hash of the task id, the same in every run), so two tasks whose users open
with the same message get different candidates instead of the same cached ones. Futures need no
offset: their requests hold the whole conversation, candidate included, and the user
simulator's hold the task's hidden intent, so they already differ wherever the tasks do.

Output, in ``output_dir``: ``turns.jsonl`` (one record per scored turn: prefix, candidates, MR,
per-metric means, per-sample rewards and, optionally, the futures) and ``conversations.jsonl``
(one record per conversation, ``ok`` or ``failed`` with its reason), appended as they finish,
plus ``manifest.json``. Resumable: a rerun skips finished conversations and replays unfinished
ones through the response cache, appending only turn records it does not have yet, so a kill -9
costs no repeated request, no duplicate and no broken line. Conversations run concurrently
(bounded, so memory stays flat); a failure rate over the threshold stops the run, and so does
the budget (``collabrl.budget``): a conversation cut off by it writes no conversation record.
With ``user.personas`` set, each task's conversation meets the persona of (task id, seed 0),
attached to the task so its sampled futures play the same person; the conversation record
carries it (``persona``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from collabrl.backends.errors import BackendError
from collabrl.budget import Budget
from collabrl.config import GenerateConfig
from collabrl.failures import FailureTally
from collabrl.personas import PersonaSet, cast, persona_of
from collabrl.records import JsonlAppender, file_manifest, latest_by, read_jsonl, write_manifest
from collabrl.reward import CandidateReward, MultiturnReward
from collabrl.rollout import Assistant
from collabrl.simulator import UserSimulator, trim_to_sentence
from collabrl.types import Completion, Conversation, Message, Task

TURNS_FILE = "turns.jsonl"
CONVERSATIONS_FILE = "conversations.jsonl"
CANDIDATE_CUT = "cut_by_length"


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
    cut: bool = False
    trimmed: bool = False
    stopped: str | None = (
        None  # why adaptive sampling stopped (settled, max_samples); None: fixed S
    )


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
    detail: str | None = None
    turns: int
    messages: list[Message]
    persona: dict[str, Any] | None = None


class _Failed(Exception):
    def __init__(self, reason: str, detail: str | None = None):
        self.reason = reason
        self.detail = detail


class Candidate(NamedTuple):
    """A sampled reply, the prompt that produced it, and whether the length limit cut it (a
    cut reply is never chosen) or it was trimmed back to its whole sentences after a cut."""

    text: str
    source: Literal["policy", "proactive"]
    cut: bool = False
    trimmed: bool = False


def candidate_record(
    reward: CandidateReward | None, candidate: Candidate, keep_futures: bool
) -> CandidateRecord:
    """The record of a scored candidate, or of a cut one that was not scored (``reward`` None)."""
    if reward is None:
        return CandidateRecord(
            text=candidate.text,
            source=candidate.source,
            mr=None,
            stderr=None,
            metric_means={},
            sample_rewards=[],
            unscored=0,
            reasons=[CANDIDATE_CUT],
            cut=True,
        )
    return CandidateRecord(
        text=reward.reply,
        source=candidate.source,
        mr=reward.mr,
        stderr=reward.stderr,
        metric_means=reward.metric_means,
        sample_rewards=[s.reward for s in reward.samples],
        unscored=reward.unscored,
        reasons=[s.reason for s in reward.samples],
        futures=[s.model_dump(mode="json") for s in reward.samples] if keep_futures else None,
        cut=candidate.cut,
        trimmed=candidate.trimmed,
        stopped=reward.stopped,
    )


def candidate_offset(task_id: str) -> int:
    """The first sample index of a task's candidates: a stable hash of its id (sha256, never
    Python's salted ``hash``), a multiple of 1024 below 2**30 so ranges of k <= 1024 never
    overlap and ``seed + index`` stays a 31-bit seed for servers that want one."""
    digest = hashlib.sha256(task_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**20 * 1024


def best_candidate(
    rewards: list[CandidateReward | None], candidates: list[Candidate]
) -> int | None:
    """Index of the highest MR among uncut candidates (the first on ties), or None."""
    scored = [
        (r.mr, -i)
        for i, (r, c) in enumerate(zip(rewards, candidates))
        if r is not None and r.mr is not None and not c.cut
    ]
    return -max(scored)[1] if scored else None


class DataEngine:
    """Builds scored conversations for tasks; see the module docstring."""

    def __init__(
        self,
        config: GenerateConfig,
        *,
        user: UserSimulator,
        policy: Assistant,
        proactive: Assistant,
        reward: MultiturnReward,
        run_info: dict[str, Any] | None = None,
        budget: Budget | None = None,
        personas: PersonaSet | None = None,
    ) -> None:
        self.config = config
        self.personas = personas
        self.budget = budget or Budget()
        self.run_info = run_info or {}
        self.user = user
        self.policy = policy
        self.proactive = proactive
        self.reward = reward
        self.outcomes: Counter[str] = Counter()
        self.failures = FailureTally()
        self.cut: Counter[str] = Counter()

    @property
    def failure_reasons(self) -> Counter[str]:
        return self.failures.reasons

    async def run(
        self,
        tasks: Iterable[Task],
        output_dir: Path,
        on_done: Callable[[ConversationRecord], None] | None = None,
        *,
        retry_failed: bool = True,
        on_turn: Callable[[TurnRecord], None] | None = None,
    ) -> Counter[str]:
        """Build conversations for ``tasks`` not yet finished in ``output_dir``; return outcomes.

        A conversation whose latest record failed is built again unless ``retry_failed`` is
        False; its earlier turns come from the response cache. ``on_turn`` sees every turn this
        run builds (replayed ones too), before its conversation's ``on_done``."""
        output_dir.mkdir(parents=True, exist_ok=True)
        turns_path, convs_path = output_dir / TURNS_FILE, output_dir / CONVERSATIONS_FILE
        finished = finished_conversations(output_dir, retry_failed=retry_failed)
        written = {(r["conversation_id"], r["turn"]) for r in _existing(turns_path)}
        todo = (t for t in tasks if t.id not in finished)
        with JsonlAppender(turns_path) as turns_out, JsonlAppender(convs_path) as convs_out:

            def write_turn(record: TurnRecord) -> None:
                if on_turn is not None:
                    on_turn(record)
                if record.key not in written:
                    written.add(record.key)
                    turns_out.append(record)

            async def one(task: Task) -> None:
                record = await self.conversation(task, write_turn)
                convs_out.append(record)
                self._count(record)
                if on_done is not None:
                    on_done(record)

            try:
                await self.budget.map_bounded(one, todo, self.config.conversations_in_flight)
            finally:
                self._write_manifest(output_dir, turns_path, convs_path)
        return self.outcomes

    def _write_manifest(self, output_dir: Path, turns_path: Path, convs_path: Path) -> None:
        """The files with their checksums, and what this run saw: outcomes, failures, cuts,
        and, with a budget, what it spent and whether the budget stopped it."""
        write_manifest(
            output_dir,
            [file_manifest(turns_path), file_manifest(convs_path)],
            command="generate",
            outcomes=dict(self.outcomes),
            failures=self.failures.to_dict(),
            cut_outputs=dict(self.cut),
            **self.budget.manifest(),
            **self.run_info,
        )

    def _count(self, record: ConversationRecord) -> None:
        self.outcomes[record.status] += 1
        if record.status == "failed":
            self.failures.add(record.reason or "failed", record.detail)
        done = self.outcomes["ok"] + self.outcomes["failed"]
        rate = self.outcomes["failed"] / done
        if (
            done >= self.config.min_conversations_for_failure_rate
            and rate > self.config.max_failure_rate
        ):
            raise EngineStopped(
                f"stopping: {self.outcomes['failed']} of {done} conversations failed "
                f"({rate:.0%} > generate.max_failure_rate={self.config.max_failure_rate:.0%}); "
                f"{self.failures.describe()}. Records written so far are kept; fix the cause "
                f"and rerun to resume."
            )

    async def conversation(
        self, task: Task, write_turn: Callable[[TurnRecord], None]
    ) -> ConversationRecord:
        conversation = Conversation()
        task = cast(task, self.personas, 0)
        try:
            opening = await self.user.next_turn(task, conversation)
            if opening.failure or opening.terminated or not opening.message:
                raise _Failed(opening.failure or "user_ended_before_asking", opening.failure_detail)
            conversation = conversation.append("user", opening.message)
            for turn in range(self.config.max_turns):
                conversation, ended = await self._turn(task, conversation, turn, write_turn)
                if ended:
                    return self._record(task, conversation, "ok", "user_terminated")
            return self._record(task, conversation, "ok", "turn_limit")
        except _Failed as failure:
            return self._record(task, conversation, "failed", "failed", failure)

    def _record(
        self,
        task: Task,
        conversation: Conversation,
        status,
        ended: str,
        failure: _Failed | None = None,
    ) -> ConversationRecord:
        return ConversationRecord(
            conversation_id=task.id,
            task_id=task.id,
            status=status,
            ended=ended,
            reason=failure and failure.reason,
            detail=failure and failure.detail,
            turns=len(conversation.turns("assistant")),
            messages=list(conversation.messages),
            persona=persona_of(task),
        )

    async def _turn(
        self,
        task: Task,
        conversation: Conversation,
        turn: int,
        write_turn: Callable[[TurnRecord], None],
    ) -> tuple[Conversation, bool]:
        """Score candidates for one assistant turn; returns the longer conversation and ended."""
        candidates = await self._candidates(conversation, candidate_offset(task.id))
        rewards = await self._score(task, conversation, candidates)
        chosen = best_candidate(rewards, candidates)
        write_turn(
            TurnRecord(
                conversation_id=task.id,
                task_id=task.id,
                turn=turn,
                prefix=list(conversation.messages),
                chosen=chosen,
                candidates=[
                    candidate_record(r, c, self.config.keep_futures)
                    for r, c in zip(rewards, candidates)
                ],
            )
        )
        if chosen is None:
            every_cut = all(c.cut for c in candidates)
            raise _Failed("every_candidate_cut" if every_cut else "no_candidate_scored")
        conversation = conversation.append("assistant", rewards[chosen].reply)
        next_message = await self._next_user_message(task, conversation, rewards[chosen])
        if next_message is None:
            return conversation, True
        return conversation.append("user", next_message), False

    async def _score(
        self, task: Task, conversation: Conversation, candidates: list[Candidate]
    ) -> list[CandidateReward | None]:
        """MR of every candidate; a cut one is not scored (None) unless cut_candidates='scored'."""
        scored = [c for c in candidates if not c.cut or self.config.cut_candidates == "scored"]
        rewards = iter(
            await self.reward.score(
                task, conversation, [c.text for c in scored], choosable=[not c.cut for c in scored]
            )
        )
        out = [next(rewards) if c in scored else None for c in candidates]
        self.cut["candidates"] += sum(c.cut for c in candidates)
        self.cut["futures"] += sum(s.future.cut_replies > 0 for r in out if r for s in r.samples)
        return out

    async def _candidates(self, conversation: Conversation, offset: int) -> list[Candidate]:
        """k distinct, non-empty replies, each tagged with its prompt and whether it was cut;
        sampled at indices ``offset`` onwards (``candidate_offset``)."""
        k = self.config.candidates
        k_pro = round(k * self.config.proactive_share)
        requests = [(self.policy, k - k_pro, "policy"), (self.proactive, k_pro, "proactive")]
        try:
            batches = await asyncio.gather(
                *(policy.reply(conversation, offset, n=n) for policy, n, _ in requests if n)
            )
        except BackendError as error:
            raise _Failed(f"policy_error:{error.reason}", str(error)) from None
        sources = [source for _, n, source in requests if n]
        seen, out = set(), []
        for batch, source in zip(batches, sources):
            for completion in batch:
                candidate = self._candidate(completion, source)
                if candidate.text and candidate.text not in seen:
                    seen.add(candidate.text)
                    out.append(candidate)
        if not out:
            raise _Failed("policy_empty_replies")
        return out

    def _candidate(self, completion: Completion, source: str) -> Candidate:
        """A reply as a candidate; a cut one is trimmed when ``cut_candidates`` says so."""
        text = completion.text.strip()
        if not completion.cut:
            return Candidate(text, source)
        if self.config.cut_candidates == "trim" and (whole := trim_to_sentence(text)):
            self.cut["candidates_trimmed"] += 1
            return Candidate(whole, source, trimmed=True)
        return Candidate(text, source, cut=True)

    async def _next_user_message(
        self, task: Task, conversation: Conversation, chosen: CandidateReward
    ) -> str | None:
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
            raise _Failed(turn.failure, turn.failure_detail)
        return None if turn.terminated else turn.message


def finished_conversations(output_dir: Path, *, retry_failed: bool = True) -> set[str]:
    """Ids of the conversations a run in ``output_dir`` skips: the latest record is ok, or
    failed and ``retry_failed`` is False."""
    latest = latest_by(_existing(output_dir / CONVERSATIONS_FILE), "conversation_id")
    return {cid for cid, r in latest.items() if r["status"] == "ok" or not retry_failed}


def _existing(path: Path) -> Iterable[dict[str, Any]]:
    return read_jsonl(path) if path.exists() else ()
