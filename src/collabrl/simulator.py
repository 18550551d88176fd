"""The user simulator: an LLM that plays a person with a hidden goal.

The simulator is shown the task, the full request the user holds back (``Task.intent``), and the
conversation so far in the role-flipped view (``Conversation.for_user_simulator``): its own past
messages as ``assistant``, the policy's as ``user``. It answers with a JSON object holding a
private thought, the visible message and a ``terminate`` flag, parsed tolerantly (fenced blocks,
prose around the object) with a bounded re-ask. Small local models rarely keep to JSON, so the
``plain`` reply format asks for the message text alone, ``[END]`` to stop. Either way termination
comes back as a flag, never as text in the transcript. A reply cut by the length limit is never
taken as the user's message (a half sentence, or a JSON object that happens to parse): it is
re-asked with a request to be shorter, and stays a ``user_cut`` failure if every try is cut;
with the plain format, ``cut_messages="trim"`` instead keeps its whole sentences (flagged
``trimmed_after_cut``), for small models that cannot be made to write less.
Health flags catch the classic simulator failures: talking like an assistant, pasting the hidden
request, saying nothing. A task that carries a persona (``collabrl.personas``: picked per
conversation, attached to the task) gets a "Who you are" section in the prompt; without one the
prompt is exactly the persona-free prompt.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from collabrl.backends.base import Backend
from collabrl.backends.errors import BackendError
from collabrl.personas import persona_block
from collabrl.prompts import load_prompt, render_prompt
from collabrl.types import Completion, Conversation, GenerationParams, Message, Task, Usage

_ASSISTANT_PHRASES = re.compile(
    r"\b(as an ai\b|i'?m an ai\b|i(?: would|'d) be (?:happy|glad) to help|how can i (?:help|assist)"
    r"|here(?:'s| is) (?:a|an|the|your) (?:solution|answer|draft|code|revised)"
    r"|i hope (?:this|that) helps|feel free to ask|let me know if you (?:need|have|would))",
    re.IGNORECASE,
)
_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
_SPEAKER_LABEL = re.compile(r"^\s*\**\s*(?:user|me|person|human)\s*\**\s*:\s*\**\s*", re.IGNORECASE)
_OTHER_SPEAKER = re.compile(
    r"^\s*\**\s*(?:assistant|ai|bot)\s*\**\s*:", re.IGNORECASE | re.MULTILINE
)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)|\n")
END_MARKER = "[END]"
ReplyFormat = Literal["json", "plain"]
CutMessages = Literal["reask", "trim"]


class UserTurn(BaseModel):
    """One simulated user message. ``failure`` is set (and ``message`` empty) when none came."""

    model_config = ConfigDict(frozen=True)

    message: str = ""
    thought: str = ""
    terminated: bool = False
    flags: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()
    usage: Usage = Usage()
    failure: str | None = None
    failure_detail: str | None = None


def parse_user_reply(text: str) -> tuple[str, str, bool] | None:
    """(thought, message, terminate) from the simulator's reply, or None if there is no such JSON."""
    candidates = [m.group(1) for m in _FENCED.finditer(text)] + _brace_spans(text)
    for candidate in reversed(candidates):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            terminate = data.get("terminate", False)
            if isinstance(terminate, str):
                terminate = terminate.strip().lower() == "true"
            return str(data.get("thought", "")), data["message"].strip(), bool(terminate)
    return None


def parse_plain_reply(text: str) -> tuple[str, str, bool] | None:
    """("", message, terminate) from a plain-text reply: a leading speaker label, wrapping quotes
    and anything from a line the model starts as the assistant on are dropped; ``[END]`` ends the
    conversation. None when nothing is left."""
    own = _OTHER_SPEAKER.split(text, maxsplit=1)[0]
    before, marker, _ = own.partition(END_MARKER)
    message = _SPEAKER_LABEL.sub("", before.strip()).strip()
    if len(message) >= 2 and message[0] == message[-1] == '"':
        message = message[1:-1].strip()
    if not message and not marker:
        return None
    return "", message, bool(marker)


def trim_to_sentence(text: str) -> str:
    """``text`` up to the end of its last whole sentence ("" when it has none): what is left of
    a message the length limit cut mid-sentence."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def _brace_spans(text: str) -> list[str]:
    """Every balanced top-level ``{...}`` span, in order (string-aware)."""
    spans, depth, start, in_string, escaped = [], 0, 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped = ch == "\\" and not escaped
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"' and depth:
            in_string = True
        elif ch == "{":
            start = i if depth == 0 else start
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def health_flags(
    message: str, terminated: bool, intent: str, leak_words: int = 12
) -> tuple[str, ...]:
    """Warning labels for one simulated message: role_inversion, intent_leak, empty."""
    flags = []
    if not message.strip() and not terminated:
        flags.append("empty")
    if _ASSISTANT_PHRASES.search(message):
        flags.append("role_inversion")
    if leaked_words(message, intent) >= min(leak_words, max(6, len(intent.split()))):
        flags.append("intent_leak")
    return tuple(flags)


def leaked_words(message: str, intent: str) -> int:
    """Length, in words, of the longest run of consecutive words the message shares with the intent."""
    a = re.findall(r"\w+", message.lower())
    b = re.findall(r"\w+", intent.lower())
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


class UserSimulator:
    """Produces the next user message for (task, conversation) with a ``user``-role backend."""

    def __init__(
        self,
        backend: Backend,
        params: GenerationParams | None = None,
        *,
        max_reasks: int = 2,
        leak_words: int = 12,
        reply_format: ReplyFormat = "json",
        cut_messages: CutMessages = "reask",
    ) -> None:
        self.backend = backend
        self.params = params or GenerationParams(temperature=1.0, max_tokens=512)
        self.max_reasks = max_reasks
        self.leak_words = leak_words
        self.reply_format = reply_format
        self.trim_cut = cut_messages == "trim" and reply_format == "plain"
        self._parse = parse_user_reply if reply_format == "json" else parse_plain_reply
        self._reask = "user_simulator_reask" + ("" if reply_format == "json" else "_plain")

    def prompt(self, task: Task, conversation: Conversation) -> list[Message]:
        """The simulator's messages: its instructions, then the conversation role-flipped."""
        answer_format = load_prompt(f"user_simulator_format_{self.reply_format}").strip()
        system = render_prompt(
            "user_simulator",
            description=task.description,
            intent=task.intent,
            persona=persona_block(task),
            answer_format=answer_format,
        )
        view = list(conversation.for_user_simulator().messages)
        if view and view[-1].role != "user":
            raise ValueError("the user simulator speaks after the assistant, not twice in a row")
        if not view:
            view = [Message(role="user", content=load_prompt("user_simulator_start").strip())]
        return [Message(role="system", content=system), *view]

    async def next_turn(
        self, task: Task, conversation: Conversation, sample_index: int = 0
    ) -> UserTurn:
        messages = self.prompt(task, conversation)
        params = self.params.model_copy(update={"n": 1, "first_sample": sample_index})
        raw: list[str] = []
        usage, cuts = Usage(), 0
        for _ in range(self.max_reasks + 1):
            try:
                [completion] = await self.backend.generate(messages, params)
            except BackendError as error:
                return UserTurn(
                    raw=tuple(raw),
                    usage=usage,
                    failure=f"user_error:{error.reason}",
                    failure_detail=str(error),
                )
            raw.append(completion.text)
            usage = usage + completion.usage
            parsed = self._read(completion)
            if parsed is not None and (parsed[1] or parsed[2]):  # a message, or a goodbye
                flags = ("trimmed_after_cut",) if completion.cut else ()
                flags += ("reasked_after_cut",) if cuts else ()
                return self._turn(task, parsed, tuple(raw), usage, flags)
            cuts += completion.cut
            reask = load_prompt("user_simulator_reask_cut" if completion.cut else self._reask)
            messages = [
                *messages,
                Message(role="assistant", content=completion.text),
                Message(role="user", content=reask.strip()),
            ]
        failure = "user_cut" if completion.cut else "user_unparsable"
        return UserTurn(raw=tuple(raw), usage=usage, failure=failure)

    def _read(self, completion: Completion) -> tuple[str, str, bool] | None:
        """The parsed reply; a cut one is None (re-asked), or its whole sentences when trimming."""
        if not completion.cut:
            return self._parse(completion.text)
        return self._parse(trim_to_sentence(completion.text)) if self.trim_cut else None

    def _turn(
        self,
        task: Task,
        parsed,
        raw: tuple[str, ...],
        usage: Usage,
        cut_flags: tuple[str, ...] = (),
    ) -> UserTurn:
        thought, message, terminated = parsed
        flags = health_flags(message, terminated, task.intent, self.leak_words) + cut_flags
        return UserTurn(
            message=message,
            thought=thought,
            terminated=terminated,
            flags=flags,
            raw=raw,
            usage=usage,
        )
