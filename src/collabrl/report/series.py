"""Plot-ready numbers: histograms with shared bins and means with intervals by x.

The HTML report only draws; every number it plots is computed here so it can be tested without a
browser. Series that are compared in one chart (chosen vs rejected MR, one system vs another)
share their bin edges, otherwise their bars would not line up. Intervals for the by-turn means
are the normal approximation (mean +/- 1.96 standard errors): cheap for thousands of points, and
only used for plots; the evaluation's own tables keep their bootstrap intervals.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_UNIT_BINS = 30


def histogram(series: Mapping[str, Sequence[float]], bins: int = 20) -> dict[str, Any] | None:
    """Counts of each series over the same edges; None when no series has a value.

    Integer-valued data with a small range (turns, grades) gets one bin per integer, centred on
    it; anything else gets ``bins`` equal bins over the joint range.
    """
    values = [v for vs in series.values() for v in vs]
    if not values:
        return None
    low, high = min(values), max(values)
    if all(float(v).is_integer() for v in values) and high - low <= MAX_UNIT_BINS:
        edges = [low - 0.5 + i for i in range(int(high - low) + 2)]
    elif high - low <= 1e-9 * max(1.0, abs(high)):  # equal up to float noise: one bin
        edges = [low - 0.5, high + 0.5]
    else:
        width = (high - low) / bins
        edges = [low + i * width for i in range(bins)] + [high]
    return {
        "edges": edges,
        "series": [
            {"name": name, "counts": _counts(vs, edges), "total": len(vs)}
            for name, vs in series.items()
        ],
    }


def _counts(values: Iterable[float], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    low, high = edges[0], edges[-1]
    width = (high - low) / len(counts)
    for v in values:
        index = min(int((v - low) / width), len(counts) - 1)
        counts[index] += 1
    return counts


def mean_interval(values: Sequence[float]) -> dict[str, float] | None:
    """Mean with a normal-approximation 95% interval; None for no values."""
    if not values:
        return None
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(values)}


def means_by_x(points: Mapping[str, Iterable[tuple[float, float | None]]]) -> dict[str, Any] | None:
    """Series of (x, value) pairs -> the mean of each series at each x (None where it has none).

    ``None`` values are left out (unscored is not zero); None when no series has a value.
    """
    grouped: dict[str, dict[float, list[float]]] = {}
    for name, pairs in points.items():
        by_x: dict[float, list[float]] = defaultdict(list)
        for x, value in pairs:
            if value is not None:
                by_x[x].append(value)
        grouped[name] = by_x
    xs = sorted({x for by_x in grouped.values() for x in by_x})
    if not xs:
        return None
    return {
        "x": xs,
        "series": [
            {"name": name, "points": [mean_interval(by_x.get(x, [])) for x in xs]}
            for name, by_x in grouped.items()
        ],
    }
