"""Interactivity: an LLM judge rates how well the assistant engaged with the user.

The judge (prompt ``judge_interactivity``) picks one of three levels: 3 = highly interactive
(asked the questions that mattered, adapted to the answers), 2 = somewhat, 1 = passive. How a
grade S becomes the metric's value is the ``scale`` option (``INTERACTIVITY_SCALES``):

* ``"unit"`` (default, the paper's text): 1 / 0.5 / 0, so R* adds at most 1 for engagement.
* ``"thirds"`` (the original CollabLLM code, paper mode): S / 3, i.e. 1 / 0.667 / 0.333; its
  judge rescaled every grade by ``x / 3`` before adding it to the reward, so even a passive
  reply earns 1/3.
* ``"itr"``: 2 * (S - 2.5), i.e. 1 / -1 / -3, the per-conversation value behind the paper's
  reported ITR (a mean of it times 100 is ITR), for a reward on exactly the reported scale.

Whatever the scale, the grade is kept in ``detail["grade"]`` and ``collabrl eval`` reports ITR
from it on the paper's scale (``itr_from_grades``): mean of 2 * (S - 2.5), times 100, which on
grades {3, 2, 1} runs from -300 (all passive) to 100 (all highly interactive).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from collabrl.backends.base import Backend
from collabrl.metrics.judge import DEFAULT_JUDGE_PARAMS, LLMJudge
from collabrl.types import Conversation, GenerationParams, Score, Task

InteractivityScale = Literal["unit", "thirds", "itr"]
INTERACTIVITY_SCALES: dict[str, dict[str, float]] = {
    "unit": {"3": 1.0, "2": 0.5, "1": 0.0},
    "thirds": {"3": 1.0, "2": 2 / 3, "1": 1 / 3},
    "itr": {"3": 1.0, "2": -1.0, "1": -3.0},
}
INTERACTIVITY_GRADES = INTERACTIVITY_SCALES["unit"]


class InteractivityJudge:
    """The judge's grade 3 / 2 / 1 as a value on ``scale``; the grade is kept in ``detail["grade"]``."""

    name = "interactivity"

    def __init__(
        self,
        backend: Backend,
        *,
        template: str = "judge_interactivity",
        params: GenerationParams = DEFAULT_JUDGE_PARAMS,
        max_reasks: int = 2,
        scale: InteractivityScale = "unit",
    ) -> None:
        if scale not in INTERACTIVITY_SCALES:
            raise ValueError(
                f"interactivity scale must be one of {', '.join(INTERACTIVITY_SCALES)}, not {scale!r}"
            )
        self.scale = scale
        self.judge = LLMJudge(
            backend, template, INTERACTIVITY_SCALES[scale], params=params, max_reasks=max_reasks
        )

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        return await self.judge.judge(conversation, task)


def itr_from_grades(grades: Iterable[int | float | str]) -> float:
    """The paper's ITR: mean of 2 * (S - 2.5) over grades S in [1, 3], times 100."""
    values = [float(g) for g in grades]
    if not values:
        raise ValueError("ITR needs at least one grade")
    if any(not 1 <= v <= 3 for v in values):
        raise ValueError(f"interactivity grades lie in [1, 3], got {values}")
    return 100 * sum(2 * (v - 2.5) for v in values) / len(values)
