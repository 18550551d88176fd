"""Helpfulness: an LLM judge rates how much the assistant moved the user toward their goal.

Not part of the paper's reward; an optional extra signal. The judge (prompt
``judge_helpfulness``) sees the task description, the user's hidden intent and the transcript,
and grades 1-10; the value is (grade - 1) / 9, in [0, 1]. Ten levels rather than three because
the reward compares close candidate replies, where a coarse scale would tie them.
"""

from __future__ import annotations

from collabrl.backends.base import Backend
from collabrl.metrics.judge import DEFAULT_JUDGE_PARAMS, LLMJudge
from collabrl.types import Conversation, GenerationParams, Score, Task

HELPFULNESS_GRADES = {str(g): (g - 1) / 9 for g in range(10, 0, -1)}


class HelpfulnessJudge:
    """Value (grade - 1) / 9 for a judge grade of 1-10; the grade is kept in ``detail``."""

    name = "helpfulness"

    def __init__(
        self,
        backend: Backend,
        *,
        template: str = "judge_helpfulness",
        params: GenerationParams = DEFAULT_JUDGE_PARAMS,
        max_reasks: int = 2,
    ) -> None:
        self.judge = LLMJudge(
            backend, template, HELPFULNESS_GRADES, params=params, max_reasks=max_reasks
        )

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        return await self.judge.judge(conversation, task)
