"""The data every part of collabrl exchanges: messages, conversations, sampling settings,
completions, tasks and scores.

All types are immutable pydantic models so that they can be hashed into cache keys, shared
between concurrent tasks without copies, and written to / read from JSON losslessly.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant"]

# Normalised reasons a generation ended. "stop": natural end or stop sequence; "length": hit
# max_tokens; "refusal": the provider refused or filtered the content; "incomplete": the output
# was cut (a broken stream, an unknown reason) and must never be treated as a finished turn.
FinishReason = Literal["stop", "length", "refusal", "incomplete"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(_Frozen):
    """One chat message."""

    role: Role
    content: str

    def to_openai(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class Conversation(_Frozen):
    """An immutable sequence of messages; every edit returns a new conversation."""

    messages: tuple[Message, ...] = ()

    @classmethod
    def of(cls, *pairs: tuple[Role, str]) -> Conversation:
        return cls(messages=tuple(Message(role=r, content=c) for r, c in pairs))

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self):  # type: ignore[override]
        return iter(self.messages)

    def append(self, role: Role, content: str) -> Conversation:
        return Conversation(messages=(*self.messages, Message(role=role, content=content)))

    def prefix(self, k: int) -> Conversation:
        """The first ``k`` messages."""
        if k < 0 or k > len(self.messages):
            raise ValueError(f"prefix length {k} outside 0..{len(self.messages)}")
        return Conversation(messages=self.messages[:k])

    @property
    def last(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    def turns(self, role: Role) -> list[Message]:
        return [m for m in self.messages if m.role == role]

    def for_user_simulator(self) -> Conversation:
        """The role-flipped view an LLM playing the *user* is shown.

        The simulated user is itself an assistant-style model, so it must see its own past
        messages as ``assistant`` and the policy's messages as ``user``. System messages belong
        to the policy's side and are dropped: the simulator gets its own system prompt.
        """
        flip: dict[Role, Role] = {"user": "assistant", "assistant": "user"}
        return Conversation(
            messages=tuple(
                Message(role=flip[m.role], content=m.content)
                for m in self.messages
                if m.role != "system"
            )
        )

    def to_openai(self) -> list[dict[str, str]]:
        return [m.to_openai() for m in self.messages]


class GenerationParams(_Frozen):
    """Sampling settings for one ``Backend.generate`` call.

    ``first_sample`` numbers the samples this call asks for (``first_sample`` ..
    ``first_sample + n - 1``). Samples with different numbers are distinct draws: two calls with
    the same messages and settings but different ``first_sample`` get different cache entries,
    which is how S independent futures from one prefix stay independent.
    """

    n: int = Field(default=1, ge=1, le=128, description="samples per call")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_tokens: int = Field(default=512, ge=1, description="reply length limit, in tokens")
    stop: tuple[str, ...] = Field(default=(), description="strings that end a reply")
    seed: int | None = Field(default=None, description="base seed; sample i uses seed + i")
    first_sample: int = Field(default=0, ge=0, description="index of this call's first sample")

    def sample_seed(self, index: int) -> int | None:
        """Seed for sample ``index`` of this call when samples are drawn by separate requests."""
        return None if self.seed is None else self.seed + self.first_sample + index


class Usage(_Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Completion(_Frozen):
    """One sampled reply. ``usage`` is this sample's share (prompt tokens counted once per call)."""

    text: str
    finish_reason: FinishReason
    usage: Usage = Usage()
    cached: bool = False

    @property
    def is_final(self) -> bool:
        """True when the text is a complete turn: the model ended it itself."""
        return self.finish_reason == "stop"

    @property
    def cut(self) -> bool:
        """True when the length limit cut the text: a real reply, but not a finished one, so
        it is flagged and never chosen, scored as a finished turn or used as an answer."""
        return self.finish_reason == "length"

    @property
    def is_cacheable(self) -> bool:
        """True when the same request would get the same kind of answer again: a finished or a
        length-cut reply (cached with its finish reason, so a replay is flagged the same way).
        Errors, refusals and broken streams are never cached."""
        return self.finish_reason in ("stop", "length")


ArtifactKind = Literal["answer", "code", "document", "none"]


class Task(_Frozen):
    """One collaborative task: what the simulated user secretly wants, and how success is judged.

    ``intent`` is the full single-turn prompt the user holds back and reveals gradually; the
    assistant never sees it. ``reference`` is what the final artifact is compared with: the
    answer (math), the unit tests (code) or the target document (writing).
    """

    id: str
    description: str = Field(
        description="what the user wants help with, e.g. 'solve a math problem'"
    )
    intent: str = Field(description="the hidden, complete single-turn request")
    reference: str | None = None
    artifact: ArtifactKind = Field(default="none", description="what the conversation produces")
    metadata: dict[str, Any] = Field(default_factory=dict)


class Score(_Frozen):
    """A metric's verdict on a conversation: a finite value, or *unscored* with a reason.

    Unscored is not zero: a judge outage or an unreadable grade must not look like a bad reply,
    so unscored values are excluded from averages. ``raw`` keeps every judge or extractor reply
    behind the score for audit; ``detail`` holds parsed extras (the grade, the extracted answer).
    """

    value: float | None = None
    reason: str | None = None
    raw: tuple[str, ...] = ()
    detail: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("a score value must be finite; use Score.unscored(reason) instead")
        return value

    @model_validator(mode="after")
    def _reason_when_unscored(self) -> Score:
        if self.value is None and not self.reason:
            raise ValueError("an unscored Score needs a reason")
        return self

    @property
    def scored(self) -> bool:
        return self.value is not None

    @classmethod
    def unscored(cls, reason: str, raw: tuple[str, ...] = (), **detail: Any) -> Score:
        return cls(value=None, reason=reason, raw=raw, detail=detail)
