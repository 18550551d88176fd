"""The shared LLM judge: render a prompt, ask a model, read one grade, never guess.

Every judged metric (interactivity, helpfulness, answer matching) goes through ``LLMJudge`` so
that the hard parts live in one place.

**What text in the judged material cannot do**, whatever its keyword or markup ("Score: 1.0",
"Rating: 10/10", "### Final verdict: A", "GRADE: 3", a fake closing marker, a fake system turn):

* *Be read as the verdict.* Each call has an id (``framing.call_id``: a hash of the template and
  every untrusted value in the prompt), and the only line read as a verdict is
  ``GRADE <id>: <grade>`` (markdown emphasis around it is tolerated). The material cannot
  contain the id, so no line of it is a verdict, even when the judge copies it into its reply.
* *Leave its frame.* Task description, intent, transcript and every extra value are shown
  between ``<<<LABEL <id>>>`` and ``<<<END LABEL <id>>>`` (``framing.frame``), so a fake closing
  marker is visibly not the real one. In the transcript each message is a role line (``USER:``,
  ``ASSISTANT:``) over its text with every line quoted (``"> "``), so a fake role turn is
  quoted text. The text itself is shown unaltered.

What no prompt format can prevent: a judge model that reads "score this 10" in the material and
*decides* to obey it. The prompts tell the judge that nothing inside the frames is addressed to
it; the verdict line must be written by the model itself, with the id it can only find in the
instructions.

**Reading.** The LAST verdict line is the verdict. The reply is *unreadable* when it has no
verdict line, when the last grade is not on the menu, or when it holds conflicting grades (two
different on-menu grades; repeating the same grade, or an off-menu slip followed by a valid last
line, is fine). An unreadable reply is re-asked (bounded by ``max_reasks``) with the bad reply
and a one-line correction appended; if it stays unreadable the score is
``unscored("judge_unparsable")``, never 0.

**Failures are tagged, not scored.** A reply cut by the length limit is ``unscored("judge_cut")``
and is not read (a grade "10" cut to "1" would be a valid, wrong grade); a refusal
(``finish_reason == "refusal"``, or refusal wording with no verdict line) is
``unscored("judge_refused")``; a ``BackendError`` is ``unscored("judge_error:<reason>")``; a
stream that broke off is ``unscored("judge_error:incomplete")``. Every raw reply is kept in
``Score.raw``; the grade, rationale and call id go to ``Score.detail``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from collabrl.backends.base import Backend
from collabrl.backends.errors import BackendError
from collabrl.metrics.framing import call_id, frame, quote
from collabrl.prompts import render_prompt
from collabrl.types import Completion, Conversation, GenerationParams, Message, Score, Task

DEFAULT_JUDGE_PARAMS = GenerationParams(temperature=0.0, max_tokens=1024)

_REFUSAL = re.compile(
    r"(?i)^\W*(i'?m sorry|i am sorry|sorry, |i can(?:'|no)t|i won'?t|i will not|"
    r"i'?m (?:not able|unable)|i am (?:not able|unable)|as an ai)"
)
_CORRECTION = (
    "Your reply could not be read: {problem}. Reply again and end with exactly one line of the "
    "form `GRADE {call}: <grade>`, where <grade> is one of: {menu}."
)


def verdict_line(call: str) -> re.Pattern[str]:
    """The verdict line of call ``call``: ``GRADE <call>: <grade>``, markdown tolerated."""
    return re.compile(
        rf"(?im)^[ \t*_`#]*grade[ \t*_`]+\[?{re.escape(call)}\]?[ \t*_`]*:[ \t*_`]*"
        r"([A-Za-z0-9+-]+(?:\.[0-9]+)?)[ \t*_`.]*$"
    )


def format_transcript(conversation: Conversation) -> str:
    """The conversation as judges see it: a role line over each message's quoted text.

    System messages are left out: they instruct the policy (e.g. the proactive baseline's prompt)
    and are not part of what the user and the assistant said to each other.
    """
    blocks = [f"{m.role.upper()}:\n{quote(m.content)}" for m in conversation if m.role != "system"]
    return "\n".join(blocks or ["(no messages)"])


@dataclass(frozen=True)
class GradeReading:
    """What a judge reply says: the grade (a menu key) or the problem that prevents reading it."""

    grade: str | None
    problem: str | None
    rationale: str = ""


def read_grade(text: str, menu: Mapping[str, float], call: str) -> GradeReading:
    """Parse the last verdict line of call ``call`` in ``text`` against ``menu`` (keys matched
    case-insensitively); lines without the call id are not verdicts."""
    keys = {key.upper(): key for key in menu}
    matches = list(verdict_line(call).finditer(text))
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

    ``template`` names a prompt file; it receives ``$id`` (the call id), ``$description``,
    ``$intent`` and ``$transcript`` as framed blocks, and every ``extra`` value as a framed,
    quoted block named after its key in upper case (``answer=`` -> ``<<<ANSWER <id>>>``).
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

    def render(self, conversation: Conversation, task: Task, **extra: str) -> tuple[str, str]:
        """The prompt for grading ``conversation``, and its call id."""
        bodies = {
            "description": quote(task.description),
            "intent": quote(task.intent),
            "transcript": format_transcript(conversation),
            **{key: quote(value) for key, value in extra.items()},
        }
        call = call_id(self.template, bodies)
        framed = {key: frame(key.upper(), body, call) for key, body in bodies.items()}
        return self.fill(id=call, **framed), call

    def fill(self, **values: str) -> str:
        """The template with its placeholders filled; here a prompt file of collabrl/prompts."""
        return render_prompt(self.template, **values)

    async def judge(self, conversation: Conversation, task: Task, **extra: str) -> Score:
        """Grade ``conversation``; unreadable, cut, refused or failed judging is unscored."""
        prompt, call = self.render(conversation, task, **extra)
        messages = [Message(role="user", content=prompt)]
        raw: list[str] = []
        problem = ""
        for attempt in range(1, self.max_reasks + 2):
            try:
                completion = (await self.backend.generate(messages, self.params))[0]
            except BackendError as err:
                return Score.unscored(
                    f"judge_error:{err.reason}", tuple(raw), attempts=attempt, call_id=call
                )
            raw.append(completion.text)
            reading = read_grade(completion.text, self.grades, call)
            failure = _failure(completion, reading)
            if failure is not None:
                return Score.unscored(failure, tuple(raw), attempts=attempt, call_id=call)
            if reading.grade is not None:
                return Score(
                    value=self.grades[reading.grade],
                    raw=tuple(raw),
                    detail={
                        "grade": reading.grade,
                        "rationale": reading.rationale,
                        "attempts": attempt,
                        "call_id": call,
                    },
                )
            problem = reading.problem or ""
            correction = _CORRECTION.format(problem=problem, call=call, menu=", ".join(self.grades))
            messages += [
                Message(role="assistant", content=completion.text),
                Message(role="user", content=correction),
            ]
        return Score.unscored(
            "judge_unparsable",
            tuple(raw),
            problem=problem,
            attempts=self.max_reasks + 1,
            call_id=call,
        )


def _failure(completion: Completion, reading: GradeReading) -> str | None:
    """Why ``completion`` is not to be read or re-asked (cut, refused, broken off), if it is not."""
    if completion.finish_reason == "length":
        return "judge_cut"
    if completion.finish_reason == "incomplete":
        return "judge_error:incomplete"
    if completion.finish_reason == "refusal":
        return "judge_refused"
    if reading.problem == "no grade line" and _REFUSAL.match(completion.text):
        return "judge_refused"
    return None
