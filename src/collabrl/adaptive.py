"""Adaptive forward sampling: when a candidate has had enough futures, by racing.

With a fixed S, every candidate gets S futures, whether its MR is far from the others' or
too close to call. Racing (Maron & Moore, "Hoeffding races", NIPS 1993; successive / action
elimination, Even-Dar, Mannor & Mansour, JMLR 2006) samples in rounds instead: after each round
every candidate's MR gets a confidence interval, and a candidate whose place is settled for the
purpose at hand stops; the others get another round, up to ``samples_max``.

The interval (``interval``): Student-t on the futures' rewards (the "t-race" of racing for
algorithm configuration, Birattari 2009), made safe for bounded, discrete rewards in two ways.
The sample variance is shrunk toward Popoviciu's bound (R^2/4, the largest variance a reward
in a range of width R can have) with the weight of one pseudo-future, so a few identical
judge grades never yield a zero-width interval. The level is Bonferroni-corrected over the
candidates and over every look the race can take (union bound), so the chance that any
interval of the race misses its true MR is at most ``1 - confidence`` (up to the t
approximation for a handful of bounded values). Distribution-free bounds (Hoeffding,
empirical Bernstein) are valid without that approximation but need dozens of futures per
candidate before they separate anything, which is past every S worth paying for.

Two purposes (``reward.adaptive``):
- ``pairs`` (DPO pairs): a candidate stops once it can be neither the best nor the worst
  (some interval lies wholly above its interval and some wholly below); everyone stops once
  the pair the export would form now (highest and lowest mean) is ordered and at least
  ``min_gap`` (the export's) apart by the intervals, lower bound of the one above upper bound
  of the other, or once no two candidates can be ``min_gap`` apart (no pair will be kept).
  With probability at least ``confidence``, then, every pair exported from a settled turn
  prefers the truly better reply by at least ``min_gap`` (it may not be the truly best and
  worst of the turn, which does not matter to DPO). Close and tied candidates sample up to
  ``samples_max``, where the choice is what a fixed ``samples_max`` would make.
- ``estimate`` (GRPO / PPO rewards, online DPO): each candidate stops once the standard error
  of its MR (shrunk variance) is at most ``target_stderr``. Fewer futures means a noisier
  reward than a fixed ``samples_max`` would give: ``target_stderr`` is that noise.

Rounds: the first gives each candidate ``samples_min`` futures, each later one ``samples_min``
more, so future ``j`` of a candidate is always sample index ``j`` (the same cache entries as a
fixed run). Unscored futures count towards ``samples_max`` but carry no reward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

AdaptiveMode = Literal["pairs", "estimate"]
StopReason = Literal["settled", "max_samples"]


@dataclass(frozen=True)
class AdaptiveSampling:
    """The racing rule; ``reward_range`` bounds one future's reward (R*)."""

    mode: AdaptiveMode
    samples_min: int
    samples_max: int
    confidence: float
    reward_range: tuple[float, float]
    min_gap: float = 0.0
    target_stderr: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.samples_min <= self.samples_max:
            raise ValueError("adaptive sampling needs 1 <= samples_min <= samples_max")
        if not 0 < self.confidence < 1:
            raise ValueError("adaptive sampling needs 0 < confidence < 1")
        if not self.reward_range[0] < self.reward_range[1]:
            raise ValueError("reward_range must be [low, high] with low < high")

    @property
    def looks(self) -> int:
        """Rounds a race can take: the Bonferroni factor over looks."""
        return 1 + math.ceil((self.samples_max - self.samples_min) / self.samples_min)

    def next_round(self, futures: int) -> int:
        """Futures to add to a candidate that has ``futures`` and is still sampling."""
        return min(self.samples_min, self.samples_max - futures)

    def interval(self, rewards: Sequence[float], candidates: int) -> tuple[float, float]:
        """Simultaneous confidence interval of one candidate's MR (see the module docstring)."""
        low, high = min(self.reward_range[0], *rewards), max(self.reward_range[1], *rewards)
        n = len(rewards)
        if n < 2:
            return low, high
        mean = math.fsum(rewards) / n
        shrunk = (math.fsum((r - mean) ** 2 for r in rewards) + (high - low) ** 2 / 4) / n
        alpha = (1 - self.confidence) / (candidates * self.looks)
        half = t_quantile(1 - alpha / 2, n - 1) * math.sqrt(shrunk / n)
        return max(mean - half, low), min(mean + half, high)

    def stderr(self, rewards: Sequence[float]) -> float:
        """Standard error of the mean with the shrunk variance (infinite below two rewards)."""
        n = len(rewards)
        if n < 2:
            return math.inf
        width = max(self.reward_range[1], *rewards) - min(self.reward_range[0], *rewards)
        mean = math.fsum(rewards) / n
        return math.sqrt((math.fsum((r - mean) ** 2 for r in rewards) + width**2 / 4) / n / n)

    def settled(
        self,
        rewards: Sequence[Sequence[float]],
        sampling: Sequence[bool],
        choosable: Sequence[bool] | None = None,
    ) -> list[bool]:
        """Which of the still ``sampling`` candidates need no more futures, given each
        candidate's scored rewards so far (stopped candidates keep their last interval).
        ``choosable`` marks the candidates the export may take as a pair's chosen reply (a reply
        cut by the length limit may only be rejected); all of them when None."""
        if self.mode == "estimate":
            return [s and self.stderr(r) <= self.target_stderr for r, s in zip(rewards, sampling)]
        choosable = list(choosable) if choosable is not None else [True] * len(rewards)
        if not any(choosable):  # no pair can be exported: nothing to race for
            return list(sampling)
        bounds = [self.interval(r, len(rewards)) for r in rewards]
        lows, highs = [b[0] for b in bounds], [b[1] for b in bounds]
        best_low = max(lo for lo, c in zip(lows, choosable) if c)
        could_best = [c and h >= best_low for h, c in zip(highs, choosable)]
        could_worst = [lo <= min(highs) for lo in lows]
        reachable = max(h for h, c in zip(highs, choosable) if c) - min(lows) >= self.min_gap
        decided = self._pair_settled(rewards, lows, highs, choosable) or not reachable
        return [
            s and (decided or not (b or w)) for s, b, w in zip(sampling, could_best, could_worst)
        ]

    def _pair_settled(
        self,
        rewards: Sequence[Sequence[float]],
        lows: list[float],
        highs: list[float],
        choosable: list[bool],
    ) -> bool:
        """Whether the pair the export would form now (the highest mean among the choosable,
        the lowest mean of all; the first on ties) is ordered, and ``min_gap`` apart, by the
        intervals."""
        scored = [i for i, r in enumerate(rewards) if r]
        best_of = [i for i in scored if choosable[i]]
        if len(scored) < 2 or not best_of:
            return False
        means = {i: math.fsum(rewards[i]) / len(rewards[i]) for i in scored}
        best = max(best_of, key=means.__getitem__)
        worst = min(scored, key=means.__getitem__)
        return best != worst and lows[best] - highs[worst] >= self.min_gap


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 1/2) of Student's t with ``df`` degrees of freedom, by bisection
    on its exact CDF for integer ``df`` (Abramowitz & Stegun 26.7.3-4)."""
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return high


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for t >= 0: 1/2 + A(t|df)/2, A's finite series in cos(theta)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        term, total = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        a = 2 / math.pi * (theta + math.sin(theta) * total) if df > 1 else 2 * theta / math.pi
    else:
        term, total = 1.0, 0.0
        for k in range(1, df // 2 + 1):
            total += term
            term *= c2 * (2 * k - 1) / (2 * k)
        a = math.sin(theta) * total
    return 0.5 + a / 2
