"""The shared LLM judge: render a prompt, ask a model, read one grade, never guess.

Every judged metric (interactivity, helpfulness, answer matching) goes through ``LLMJudge`` so
that the hard parts live in one place:

* **Injection-proof transcripts.** ``format_transcript`` quotes the judged conversation the way
  e-mail quotes a reply: every line of every message starts with ``"> "``, so nothing the
  conversation says can appear at the start of a line of the prompt (no fake role header, no
  fake closing marker, no fake grade line). On top of that, anything that looks like our own
  syntax is altered wherever it occurs: ``<<<`` (every marker starts with it) becomes ``< <<``
  and ``GRADE:`` becomes ``GRADE (quoted):``. A conversation that says "GRADE: 10" therefore
  shows the judge no grade at all, only quoted text.
* **One grade, read strictly.** A grade is a line ``GRADE: <token>`` (markdown emphasis around it
  is tolerated). The LAST grade line is the verdict. The reply is *unreadable* when it has no
  grade line, when the last grade is not on the menu, or when it holds conflicting grades
  (two different on-menu grades; repeating the same grade, or an off-menu slip followed by a
  valid last line, is fine). An unreadable reply is re-asked (bounded by ``max_reasks``) with the
  bad reply and a one-line correction appended; if it stays unreadable the score is
  ``unscored("judge_unparsable")``, never 0.
* **Failures are tagged, not scored.** A refusal (``finish_reason == "refusal"``, or refusal
  wording with no grade) is ``unscored("judge_refused")``; a ``BackendError`` is
  ``unscored("judge_error:<reason>")``; a cut output is ``unscored("judge_error:incomplete")``.
  Every raw reply is kept in ``Score.raw``; the grade and rationale go to ``Score.detail``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from collabrl.backends.base import Backend
from collabrl.backends.errors import BackendError
from collabrl.prompts import render_prompt
from collabrl.types import Conversation, GenerationParams, Message, Score, Task

TRANSCRIPT_BEGIN = "<<<TRANSCRIPT>>>"
TRANSCRIPT_END = "<<<END TRANSCRIPT>>>"
DEFAULT_JUDGE_PARAMS = GenerationParams(temperature=0.0, max_tokens=1024)

# Our grade syntax wherever it occurs in judged text: "grade" followed by a colon, possibly
# with markdown emphasis in between ("**Grade**:", "GRADE :", "grade：").
_GRADE_SYNTAX = re.compile(r"(?i)\b(grade)(?=[\s*_`~]*[:：])")
# A grade line in the judge's reply.
_GRADE_LINE = re.compile(
    r"(?im)^[ \t*_`#]*grade[ \t*_`]*:[ \t*_`]*([A-Za-z0-9+-]+(?:\.[0-9]+)?)[ \t*_`.]*$"
)
_REFUSAL = re.compile(
    r"(?i)^\W*(i'?m sorry|i am sorry|sorry, |i can(?:'|no)t|i won'?t|i will not|"
    r"i'?m (?:not able|unable)|i am (?:not able|unable)|as an ai)"
)
_CORRECTION = (
    "Your reply could not be read: {problem}. Reply again and end with exactly one line of the "
    "form `GRADE: <grade>`, where <grade> is one of: {menu}."
)


def neutralise(text: str) -> str:
    """``text`` with our marker and grade syntax altered so it cannot be read as ours."""
    text = re.sub(r"<(?=<<)", "< ", text)
    return _GRADE_SYNTAX.sub(r"\1 (quoted)", text)


def _quote(text: str) -> str:
    lines = neutralise(text).splitlines() or [""]
    return "\n".join(f"> {line}" if line else ">" for line in lines)


def quote_block(label: str, text: str) -> str:
    """Untrusted ``text`` between ``<<<LABEL>>>`` and ``<<<END LABEL>>>``, quoted line by line."""
    return f"<<<{label}>>>\n{_quote(text)}\n<<<END {label}>>>"


def format_transcript(conversation: Conversation) -> str:
    """The conversation as judges see it: role headers, quoted message lines, unforgeable markers.

    System messages are left out: they instruct the policy (e.g. the proactive baseline's prompt)
    and are not part of what the user and the assistant said to each other.
    """
    blocks = [
        f"{m.role.upper()}:\n{_quote(m.content)}" for m in conversation if m.role != "system"
    ]
    return "\n".join([TRANSCRIPT_BEGIN, *(blocks or ["(no messages)"]), TRANSCRIPT_END])


@dataclass(frozen=True)
class GradeReading:
    """What a judge reply says: the grade (a menu key) or the problem that prevents reading it."""

    grade: str | None
    problem: str | None
    rationale: str = ""


def read_grade(text: str, menu: Mapping[str, float]) -> GradeReading:
    """Parse the last grade line of ``text`` against ``menu`` (keys matched case-insensitively)."""
    keys = {key.upper(): key for key in menu}
    matches = list(_GRADE_LINE.finditer(text))
    if not matches:
        return GradeReading(None, "no grade line")
    last = keys.get(matches[-1].group(1).upper())
    if last is None:
        return GradeReading(None, f"grade {matches[-1].group(1)!r} is not on the menu")
    on_menu = {keys[m.group(1).upper()] for m in matches if m.group(1).upper() in keys}
    if len(on_menu) > 1:
        return GradeReading(None, f"conflicting grades {sorted(on_menu)}")
    return GradeReading(last, None, text[: matches[-1].start()].strip())


class LLMJudge:
    """Ask ``backend`` to grade a conversation with prompt ``template`` and a grade ``menu``.

    ``template`` names a prompt file; it receives ``$description`` (neutralised),
    ``$intent`` and ``$transcript`` (quoted blocks) and every ``extra`` value as a quoted block
    named after its key in upper case (``answer=`` -> ``<<<ANSWER>>>``).
    """

    def __init__(
        self,
        backend: Backend,
        template: str,
        grades: Mapping[str, float],
        *,
        params: GenerationParams = DEFAULT_JUDGE_PARAMS,
        max_reasks: int = 2,
    ) -> None:
        if not grades:
            raise ValueError("a judge needs at least one grade")
        if params.n != 1:
            raise ValueError("a judge samples one reply per call (params.n must be 1)")
        if max_reasks < 0:
            raise ValueError("max_reasks must be >= 0")
        self.backend = backend
        self.template = template
        self.grades = {str(k): float(v) for k, v in grades.items()}
        self.params = params
        self.max_reasks = max_reasks

    def render(self, conversation: Conversation, task: Task, **extra: str) -> str:
        return render_prompt(
            self.template,
            description=neutralise(task.description),
            intent=quote_block("INTENT", task.intent),
            transcript=format_transcript(conversation),
            **{key: quote_block(key.upper(), value) for key, value in extra.items()},
        )

    async def judge(self, conversation: Conversation, task: Task, **extra: str) -> Score:
        """Grade ``conversation``; unreadable, refused or failed judging is unscored."""
        messages = [Message(role="user", content=self.render(conversation, task, **extra))]
        raw: list[str] = []
        problem = ""
        for attempt in range(1, self.max_reasks + 2):
            try:
                completion = (await self.backend.generate(messages, self.params))[0]
            except BackendError as err:
                return Score.unscored(f"judge_error:{err.reason}", tuple(raw), attempts=attempt)
            raw.append(completion.text)
            if completion.finish_reason == "refusal":
                return Score.unscored("judge_refused", tuple(raw), attempts=attempt)
            if completion.finish_reason == "incomplete":
                return Score.unscored("judge_error:incomplete", tuple(raw), attempts=attempt)
            reading = read_grade(completion.text, self.grades)
            if reading.grade is not None:
                return Score(
                    value=self.grades[reading.grade],
                    raw=tuple(raw),
                    detail={"grade": reading.grade, "rationale": reading.rationale,
                            "attempts": attempt},
                )
            if reading.problem == "no grade line" and _REFUSAL.match(completion.text):
                return Score.unscored("judge_refused", tuple(raw), attempts=attempt)
            problem = reading.problem or ""
            correction = _CORRECTION.format(problem=problem, menu=", ".join(self.grades))
            messages += [
                Message(role="assistant", content=completion.text),
                Message(role="user", content=correction),
            ]
        return Score.unscored("judge_unparsable", tuple(raw), problem=problem,
                              attempts=self.max_reasks + 1)
