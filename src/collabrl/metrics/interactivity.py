"""Interactivity: an LLM judge rates how well the assistant engaged with the user.

The judge (prompt ``judge_interactivity``) picks one of three levels: 3 = highly interactive
(asked the questions that mattered, adapted to the answers), 2 = somewhat, 1 = passive. The
reward uses them as 1 / 0.5 / 0. The paper reports interactivity (ITR) on another scale: each
grade S becomes 2 * (S - 2.5), averaged and multiplied by 100 (``itr_from_grades``); on
grades {3, 2, 1} that scale runs from -300 (all passive) to 100 (all highly interactive).
"""

from __future__ import annotations

from collections.abc import Iterable

from collabrl.backends.base import Backend
from collabrl.metrics.judge import DEFAULT_JUDGE_PARAMS, LLMJudge
from collabrl.types import Conversation, GenerationParams, Score, Task

INTERACTIVITY_GRADES = {"3": 1.0, "2": 0.5, "1": 0.0}


class InteractivityJudge:
    """Value 1 / 0.5 / 0 for grades 3 / 2 / 1; the grade is kept in ``detail["grade"]``."""

    name = "interactivity"

    def __init__(
        self,
        backend: Backend,
        *,
        template: str = "judge_interactivity",
        params: GenerationParams = DEFAULT_JUDGE_PARAMS,
        max_reasks: int = 2,
    ) -> None:
        self.judge = LLMJudge(
            backend, template, INTERACTIVITY_GRADES, params=params, max_reasks=max_reasks
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
