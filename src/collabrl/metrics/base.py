"""The Metric protocol: ``async (conversation, task) -> Score``.

A metric judges a whole conversation (typically a sampled future) against its task. It returns
``Score.unscored(reason)`` when it cannot decide (a judge outage, an unreadable grade, a missing
reference), never a made-up 0, so the multiturn-aware reward can exclude it. Metrics are small
objects built with the backends they need; anything with a ``name`` and this call signature works.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from collabrl.types import Conversation, Score, Task


@runtime_checkable
class Metric(Protocol):
    name: str

    async def __call__(self, conversation: Conversation, task: Task) -> Score: ...


def applies_to(metric: Metric, task: Task) -> bool:
    """Whether ``metric`` scores ``task``. A task metric (accuracy, BLEU, pass rate) declares the
    artifact kind it compares in an ``artifact`` attribute and is skipped for other tasks, so
    one reward config serves mixed task sets; metrics without it apply to every task."""
    kind = getattr(metric, "artifact", None)
    return kind is None or kind == task.artifact
