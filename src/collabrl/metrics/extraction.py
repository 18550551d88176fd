"""Pull the final artifact (answer, code, document) out of a conversation, once per conversation.

Task metrics compare what a conversation finally produced with the task's reference, so they
first need that artifact. An LLM extracts it with the ``extract_artifact`` prompt; the result is
cached in memory by (conversation, artifact kind) with single-flight, so accuracy, BLEU and pass
rate scoring the same sampled future share one extraction call even when they run concurrently.

**What text in the conversation cannot do.** The extractor must copy code and documents exactly,
so it reads the conversation unaltered (``verbatim_transcript``). What frames it, and the only
reply it accepts, carry the call id (``framing.call_id``, a hash of the template and every
untrusted value of the prompt): the transcript sits between ``<<<TRANSCRIPT <id>>>`` and
``<<<END TRANSCRIPT <id>>>``, and the artifact is read only from a block between
``<<<ARTIFACT <id>>>`` and ``<<<END ARTIFACT <id>>>``. The conversation cannot contain the id,
so a fake closing marker does not close the transcript and a fake answer block in it (with any
id or none) is not an answer, even when the extractor copies it into its reply.

Two outcomes without text are kept apart, because metrics treat them differently:

* ``reason == NO_ARTIFACT``: the extractor read the conversation and found nothing (it replied
  NONE). That is a real outcome: the conversation failed to produce an answer, so task metrics
  score it 0 (see ``missing_artifact_score``).
* any other reason (``extract_error:<backend reason>``, ``extract_cut`` (the reply hit the
  length limit: a cut artifact is not read, "42" cut to "4" would be a wrong answer),
  ``extract_refused``, ``extract_unparsable``, ``no_artifact_kind``): extraction failed, so task
  metrics are unscored. Failures are not cached (a later call may succeed); concurrent callers
  still share them.

For kind ``"code"``, when the LLM answers NONE or unreadably, the last fenced code block an
assistant message contains is used instead (``method="last_code_block"``): a conversation that
shows code did produce code, and small extractor models often miss it. No fallback follows a
backend error, a refusal or a cut output, so an outage never silently changes how artifacts
are extracted.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass

from collabrl.backends.base import Backend
from collabrl.backends.errors import BackendError
from collabrl.metrics.framing import call_id, frame
from collabrl.prompts import render_prompt
from collabrl.types import ArtifactKind, Conversation, GenerationParams, Message, Score, Task

NO_ARTIFACT = "no_artifact"
DEFAULT_EXTRACTOR_PARAMS = GenerationParams(temperature=0.0, max_tokens=4096)

_FENCED_CODE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_NONE_REPLY = re.compile(r"(?i)\s*none\W*")  # the whole reply says there is nothing
_NONE_INSIDE = re.compile(
    r"\s*NONE\s*"
)  # inside a block only the upper-case word: "None" may be an answer

_Key = tuple[Conversation, ArtifactKind]
# Replies that are not read, by finish reason: a cut artifact may be a wrong one ("42" -> "4").
_FAILURES = {
    "length": "extract_cut",
    "refusal": "extract_refused",
    "incomplete": "extract_error:incomplete",
}


@dataclass(frozen=True)
class Extraction:
    """The artifact text, or None with a ``reason``; ``raw`` keeps the extractor's reply."""

    text: str | None
    reason: str | None = None
    raw: tuple[str, ...] = ()
    method: str = "llm"


def missing_artifact_score(extraction: Extraction, **detail: object) -> Score:
    """The score of a task metric when there is no artifact text to compare.

    NONE from the extractor is a genuine failure of the conversation (0); anything else is a
    failure of the extraction (unscored).
    """
    if extraction.reason == NO_ARTIFACT:
        return Score(
            value=0.0,
            raw=extraction.raw,
            detail={**detail, "extracted": None, "reason": NO_ARTIFACT},
        )
    return Score.unscored(extraction.reason or "extract_failed", extraction.raw, **detail)


def verbatim_transcript(conversation: Conversation) -> str:
    """The conversation for the extractor: role lines over unaltered text (it must copy code and
    documents exactly), no system messages. The caller frames it with the call id."""
    blocks = [f"{m.role.upper()}:\n{m.content}" for m in conversation if m.role != "system"]
    return "\n\n".join(blocks or ["(no messages)"])


def parse_artifact(reply: str, call: str) -> Extraction:
    """Read the last ``<<<ARTIFACT <call>>>`` block of ``reply``, or NONE; blocks without the
    call id are not answers."""
    begin_marker, end_marker = f"<<<ARTIFACT {call}>>>", f"<<<END ARTIFACT {call}>>>"
    begin = reply.rfind(begin_marker)
    end = reply.find(end_marker, begin) if begin >= 0 else -1
    if end >= 0:
        text = reply[begin + len(begin_marker) : end].strip("\r\n")
        if text.strip() and not _NONE_INSIDE.fullmatch(text):
            return Extraction(text, raw=(reply,))
        return Extraction(None, NO_ARTIFACT, (reply,))
    if _NONE_REPLY.fullmatch(reply):
        return Extraction(None, NO_ARTIFACT, (reply,))
    return Extraction(None, "extract_unparsable", (reply,))


def last_code_block(conversation: Conversation) -> str | None:
    """The last fenced code block in the assistant's messages, if any."""
    for message in reversed(conversation.turns("assistant")):
        blocks = _FENCED_CODE.findall(message.content)
        if blocks:
            return blocks[-1].rstrip("\n")
    return None


class ArtifactExtractor:
    """Extracts artifacts with ``backend``; share one instance among the metrics of a run."""

    def __init__(
        self,
        backend: Backend,
        *,
        params: GenerationParams = DEFAULT_EXTRACTOR_PARAMS,
        template: str = "extract_artifact",
        max_cached: int = 4096,
    ) -> None:
        if params.n != 1:
            raise ValueError("the extractor samples one reply per call (params.n must be 1)")
        self.backend = backend
        self.params = params
        self.template = template
        self.max_cached = max_cached
        self._done: OrderedDict[_Key, Extraction] = OrderedDict()
        self._pending: dict[_Key, asyncio.Future[Extraction]] = {}

    async def extract(self, conversation: Conversation, task: Task) -> Extraction:
        """The artifact of kind ``task.artifact`` that ``conversation`` arrived at."""
        if task.artifact == "none":
            return Extraction(None, "no_artifact_kind")
        key = (conversation, task.artifact)
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._run(key, conversation, task))
            self._pending[key] = pending
        # shield: one caller being cancelled must not cancel the call the others wait for
        return await asyncio.shield(pending)

    async def _run(self, key: _Key, conversation: Conversation, task: Task) -> Extraction:
        try:
            extraction = await self._extract(conversation, task)
        finally:
            del self._pending[key]
        if extraction.text is not None or extraction.reason == NO_ARTIFACT:
            self._done[key] = extraction
            while len(self._done) > self.max_cached:
                self._done.popitem(last=False)
        return extraction

    def render(self, conversation: Conversation, task: Task) -> tuple[str, str]:
        """The prompt for extracting from ``conversation``, and its call id."""
        transcript = verbatim_transcript(conversation)
        call = call_id(
            self.template,
            {"kind": task.artifact, "description": task.description, "transcript": transcript},
        )
        prompt = render_prompt(
            self.template,
            id=call,
            kind=task.artifact,
            description=task.description,
            transcript=frame("TRANSCRIPT", transcript, call),
        )
        return prompt, call

    async def _extract(self, conversation: Conversation, task: Task) -> Extraction:
        prompt, call = self.render(conversation, task)
        try:
            completion = (
                await self.backend.generate([Message(role="user", content=prompt)], self.params)
            )[0]
        except BackendError as err:
            return Extraction(None, f"extract_error:{err.reason}")
        failure = _FAILURES.get(completion.finish_reason)
        if failure is not None:
            return Extraction(None, failure, (completion.text,))
        extraction = parse_artifact(completion.text, call)
        if extraction.text is None and task.artifact == "code":
            code = last_code_block(conversation)
            if code is not None:
                return Extraction(code, raw=extraction.raw, method="last_code_block")
        return extraction
