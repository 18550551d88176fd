"""Judges from user code: any prompt and grade scale, judged and framed like the built-in ones.

A judge is a prompt template plus a grade scale (grade -> value), the two things that make
interactivity and helpfulness different metrics. ``JudgePrompt`` holds them; the metric
``llm_judge`` (``PromptJudge``) asks the ``judge`` role with them through the shared
``LLMJudge``, so everything that makes the built-in judges safe holds for user judges too: the
task, intent and transcript reach the prompt framed and quoted under a per-call id, only the
line ``GRADE <id>: <grade>`` is read, an unreadable reply is re-asked and then unscored, never 0.

The template is ``string.Template`` text with the placeholders ``$id``, ``$description``,
``$intent`` and ``$transcript`` (the last three arrive framed, see ``collabrl.metrics.judge``),
and it must ask for the verdict line ``GRADE $id: <grade>``. A judge is named in the metric's
options: ``judge:`` a built-in judge (``interactivity``, ``helpfulness``), a ``module:attribute``
reference or an entry point in the group ``collabrl.judges``, each naming a ``JudgePrompt``; or
``prompt:`` a template file with ``grades:`` its scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from collabrl.backends.base import Backend
from collabrl.metrics.helpfulness import HELPFULNESS_GRADES
from collabrl.metrics.interactivity import INTERACTIVITY_GRADES
from collabrl.metrics.judge import LLMJudge
from collabrl.plugins import resolve
from collabrl.prompts import load_prompt
from collabrl.types import Conversation, Score, Task

PLACEHOLDERS = ("id", "description", "intent", "transcript")
VERDICT = "GRADE $id:"


@dataclass(frozen=True)
class JudgePrompt:
    """A judge plugin: the prompt template text and its scale, grade -> value in R*."""

    prompt: str
    grades: Mapping[str, float]

    def __post_init__(self) -> None:
        if VERDICT not in self.prompt:
            raise ValueError(f"a judge prompt must ask for the verdict line `{VERDICT} <grade>`")
        try:
            Template(self.prompt).substitute({key: "" for key in PLACEHOLDERS})
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"a judge prompt may only use ${', $'.join(PLACEHOLDERS)} (found {error})"
            ) from None
        if not self.grades:
            raise ValueError("a judge needs at least one grade")
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in self.grades.values()):
            raise ValueError(f"every grade needs a finite number as its value: {dict(self.grades)}")


BUILTIN_JUDGES: dict[str, JudgePrompt] = {
    "interactivity": JudgePrompt(load_prompt("judge_interactivity"), INTERACTIVITY_GRADES),
    "helpfulness": JudgePrompt(load_prompt("judge_helpfulness"), HELPFULNESS_GRADES),
}


class _TemplateJudge(LLMJudge):
    """``LLMJudge`` over template text (``self.template``) rather than a collabrl prompt file."""

    def fill(self, **values: str) -> str:
        return Template(self.template).substitute(values)


class PromptJudge:
    """The metric ``llm_judge``: the value of the grade ``judge`` gives, named ``name``."""

    def __init__(
        self, backend: Backend, judge: JudgePrompt, *, name: str = "llm_judge", max_reasks: int = 2
    ) -> None:
        self.name = name
        self.judge = _TemplateJudge(backend, judge.prompt, judge.grades, max_reasks=max_reasks)

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        return await self.judge.judge(conversation, task)


def judge_prompt(options: Mapping[str, Any]) -> JudgePrompt:
    """The judge ``options`` name: ``judge`` (a name or reference) or ``prompt`` + ``grades``."""
    if (options["judge"] is None) == (options["prompt"] is None):
        raise ValueError(
            "llm_judge: give either `judge` (a judge name or module:attribute) "
            "or `prompt` (a template file) with `grades`"
        )
    if options["judge"] is not None:
        found = resolve("judges", options["judge"], BUILTIN_JUDGES)
        if not isinstance(found, JudgePrompt):
            raise ValueError(
                f"judge {options['judge']!r} is a {type(found).__name__}, not a "
                f"collabrl.metrics.prompt_judge.JudgePrompt"
            )
        return found
    if not isinstance(options["grades"], Mapping):
        raise ValueError("llm_judge: `prompt` needs `grades`, a mapping grade -> value")
    path = Path(options["prompt"])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(
            f"llm_judge: cannot read the prompt file {path}: {error.strerror}"
        ) from None
    try:
        return JudgePrompt(text, {str(k): v for k, v in options["grades"].items()})
    except ValueError as error:
        raise ValueError(f"llm_judge: {path}: {error}") from None
