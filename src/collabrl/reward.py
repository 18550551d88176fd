"""The multiturn-aware reward (MR): how well the conversation goes *after* a candidate reply.

For a conversation prefix and a candidate assistant reply, the ``ForwardSampler`` samples S
futures of w more turn pairs; each future is scored by weighted metrics, R* = sum(weight * value);
MR is the mean of R* over the futures that could be scored. A future whose rollout failed, or in
which any weighted metric is unscored, is excluded (and counted), never scored 0; a candidate
with no scored future is itself unscored. Candidates, futures and metrics all run concurrently;
each future is scored as soon as it is complete. A future in which the length limit cut an
assistant reply is unscored (``future_cut``) by default: its last reply is not an answer the
metrics should read; ``cut_futures="scored"`` scores it as it is (the flag stays). Task metrics that compare another kind of
artifact than the task's (accuracy on a writing task) are skipped for it, not unscored.

Adaptive sampling (``reward.adaptive``, ``collabrl.adaptive``): instead of S futures each,
futures are sampled in rounds of ``samples_min`` per candidate, and a race decides after each
round which candidates stop: in ``pairs`` mode those whose place (best, worst, neither, and
whether the best-worst gap reaches the export's ``min_gap``) is settled with the configured
confidence; in ``estimate`` mode those whose MR has reached ``target_stderr``; the rest go on up
to ``samples_max``. Future ``j`` is still sample index ``j``. Each candidate records why it
stopped (``settled`` or ``max_samples``; None with a fixed S, which is the default and runs
exactly as without the rule). ``pairs`` is safe for DPO pairs: it spends futures where the
choice is close and keeps the pairs a fixed ``samples_max`` would export. For GRPO / PPO
rewards use ``estimate``: a settled candidate's MR is only known to within ``target_stderr``.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from collabrl.adaptive import AdaptiveSampling, StopReason
from collabrl.metrics.base import Metric, applies_to
from collabrl.rollout import ForwardSampler, Rollout
from collabrl.types import Conversation, Score, Task

CutFutures = Literal["unscored", "scored"]
FUTURE_CUT = "future_cut"  # a sampled future in which the length limit cut an assistant reply


@dataclass(frozen=True)
class WeightedMetric:
    metric: Metric
    weight: float


class SampleScore(BaseModel):
    """One sampled future and its scores; ``reward`` is None when it could not be scored."""

    model_config = ConfigDict(frozen=True)

    future: Rollout
    scores: dict[str, Score]
    reward: float | None
    reason: str | None = None


class CandidateReward(BaseModel):
    """The MR of one candidate reply, with everything behind it."""

    model_config = ConfigDict(frozen=True)

    reply: str
    mr: float | None
    metric_means: dict[str, float | None]
    samples: list[SampleScore]
    stderr: float | None
    unscored: int
    stopped: StopReason | None = None  # why adaptive sampling stopped; None with a fixed S

    @property
    def futures(self) -> list[Rollout]:
        return [s.future for s in self.samples]

    @property
    def scored(self) -> bool:
        return self.mr is not None


class MultiturnReward:
    """MR = mean over S sampled futures of the weighted sum of metric values."""

    def __init__(
        self,
        metrics: Mapping[str, WeightedMetric],
        sampler: ForwardSampler,
        *,
        cut_futures: CutFutures = "unscored",
        adaptive: AdaptiveSampling | None = None,
    ) -> None:
        if not any(m.weight for m in metrics.values()):
            raise ValueError("the multiturn-aware reward needs at least one metric with a weight")
        self.metrics = dict(metrics)
        self.sampler = sampler
        self.cut_futures = cut_futures
        self.adaptive = (
            adaptive if sampler.window else None
        )  # window 0: one future, nothing to race

    async def score(
        self,
        task: Task,
        prefix: Conversation,
        candidates: Sequence[str],
        choosable: Sequence[bool] | None = None,
    ) -> list[CandidateReward]:
        """MR for each candidate reply to ``prefix`` (which ends with a user message).
        ``choosable``: which candidates may become a pair's chosen reply (adaptive ``pairs``
        races for those; a cut reply may only be rejected); all when None."""
        if prefix.last is None or prefix.last.role != "user":
            raise ValueError("candidates answer a prefix that ends with a user message")
        if self.adaptive is not None:
            return await self._race(task, prefix, candidates, self.adaptive, choosable)
        return list(await asyncio.gather(*(self.score_one(task, prefix, c) for c in candidates)))

    async def score_one(self, task: Task, prefix: Conversation, candidate: str) -> CandidateReward:
        if self.adaptive is not None:
            return (await self._race(task, prefix, [candidate], self.adaptive))[0]
        conversation = prefix.append("assistant", candidate)
        count = self.sampler.future_count
        samples = await asyncio.gather(*(self._sample(task, conversation, j) for j in range(count)))
        return summarise(candidate, list(samples), self.metrics)

    async def _race(
        self,
        task: Task,
        prefix: Conversation,
        candidates: Sequence[str],
        rule: AdaptiveSampling,
        choosable: Sequence[bool] | None = None,
    ) -> list[CandidateReward]:
        """Rounds of futures for the candidates the rule has not stopped (collabrl.adaptive)."""
        conversations = [prefix.append("assistant", c) for c in candidates]
        samples: list[list[SampleScore]] = [[] for _ in candidates]
        stopped: list[StopReason | None] = [None] * len(candidates)
        while sampling := [i for i, reason in enumerate(stopped) if reason is None]:
            wanted = [
                (i, j)
                for i in sampling
                for j in range(len(samples[i]), len(samples[i]) + rule.next_round(len(samples[i])))
            ]
            done = await asyncio.gather(
                *(self._sample(task, conversations[i], j) for i, j in wanted)
            )
            for (i, _), sample in zip(wanted, done):
                samples[i].append(sample)
            rewards = [[s.reward for s in ss if s.reward is not None] for ss in samples]
            settled = rule.settled(rewards, [reason is None for reason in stopped], choosable)
            for i in sampling:
                if settled[i]:
                    stopped[i] = "settled"
                elif len(samples[i]) >= rule.samples_max:
                    stopped[i] = "max_samples"
        return [
            summarise(c, ss, self.metrics, stopped=reason)
            for c, ss, reason in zip(candidates, samples, stopped)
        ]

    async def _sample(self, task: Task, conversation: Conversation, index: int) -> SampleScore:
        future = await self.sampler.sample_one(task, conversation, index)
        metrics = {n: m for n, m in self.metrics.items() if applies_to(m.metric, task)}
        if future.failed or (future.cut_replies and self.cut_futures == "unscored"):
            reason = (future.error or future.ended) if future.failed else FUTURE_CUT
            scores = {n: Score.unscored(f"future_failed:{reason}") for n in metrics}
            return SampleScore(future=future, scores=scores, reward=None, reason=reason)
        values = await asyncio.gather(
            *(m.metric(future.conversation, task) for m in metrics.values())
        )
        scores = dict(zip(metrics, values))
        combined = combine(scores, metrics)
        return SampleScore(
            future=future, scores=scores, reward=combined.reward, reason=combined.reason
        )


class FutureReward(NamedTuple):
    """R* of one future, or None with the reason it could not be scored."""

    reward: float | None
    reason: str | None = None


def combine(scores: Mapping[str, Score], metrics: Mapping[str, WeightedMetric]) -> FutureReward:
    """R* = sum(weight * value) over weighted metrics, or None with the unscored metrics named."""
    if not any(m.weight for m in metrics.values()):
        return FutureReward(None, "no weighted metric applies to this task")
    missing = [n for n, m in metrics.items() if m.weight and not scores[n].scored]
    if missing:
        reasons = ", ".join(f"{n}={scores[n].reason}" for n in missing)
        return FutureReward(None, f"unscored: {reasons}")
    return FutureReward(sum(m.weight * scores[n].value for n, m in metrics.items() if m.weight))


def summarise(
    reply: str,
    samples: list[SampleScore],
    metrics: Mapping[str, WeightedMetric],
    stopped: StopReason | None = None,
) -> CandidateReward:
    rewards = [s.reward for s in samples if s.reward is not None]
    means = {}
    for name in metrics:
        values = [
            s.scores[name].value for s in samples if name in s.scores and s.scores[name].scored
        ]
        if any(name in s.scores for s in samples):
            means[name] = statistics.fmean(values) if values else None
    stderr = statistics.stdev(rewards) / math.sqrt(len(rewards)) if len(rewards) > 1 else None
    return CandidateReward(
        reply=reply,
        mr=statistics.fmean(rewards) if rewards else None,
        metric_means=means,
        samples=samples,
        stderr=stderr,
        unscored=len(samples) - len(rewards),
        stopped=stopped,
    )
