"""Statistics for evaluations: bootstrap confidence intervals and paired differences.

Every figure in an evaluation comes with a 95% bootstrap interval (percentile method, a fixed
seed so reports are reproducible). Systems are compared *paired*: on the same tasks and seeds,
the per-item difference is resampled, which removes the task-difficulty variance that unpaired
intervals would carry. A difference whose interval contains 0 is reported as within noise.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap interval over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 1, scale: float = 1.0) -> str:
        m, lo, hi = (round(v * scale, digits) for v in (self.mean, self.low, self.high))
        return f"{m} [{lo}, {hi}]"


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (a - b) over items both systems have, with its interval; ``within_noise`` when
    the interval contains 0."""

    a: str
    b: str
    estimate: Estimate

    @property
    def within_noise(self) -> bool:
        return self.estimate.low <= 0 <= self.estimate.high

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            **self.estimate.to_dict(),
            "within_noise": self.within_noise,
        }


def bootstrap_mean(
    values: Sequence[float], *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap interval."""
    if not values:
        raise ValueError("bootstrap needs at least one value")
    n = len(values)
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[int(tail * (resamples - 1))]
    high = means[int((1 - tail) * (resamples - 1))]
    return Estimate(mean=statistics.fmean(values), low=low, high=high, n=n)


def paired_difference(
    a_name: str, a: Mapping[object, float], b_name: str, b: Mapping[object, float], **kwargs
) -> PairedDifference | None:
    """Bootstrap of ``a[k] - b[k]`` over the keys both have; None when they share none."""
    keys = sorted(set(a) & set(b), key=repr)
    if not keys:
        return None
    return PairedDifference(a_name, b_name, bootstrap_mean([a[k] - b[k] for k in keys], **kwargs))
