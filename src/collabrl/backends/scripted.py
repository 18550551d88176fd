"""A deterministic backend that replies from rules, a list, or a function you give it.

Shipped with the package (not only the tests) so that docs, examples and your own tests can run
every collabrl component without a model: the same idea as inspect_ai's ``mockllm``. A reply
function may be async, may look at the whole request, and may raise any
``collabrl.backends.errors.BackendError`` to rehearse failures. A text reply may say
``$call_id``: it becomes the call id the request states (judge and extractor prompts do, and
accept only replies that carry it), so a fixed reply like ``"Fine.\nGRADE $call_id: 3"`` can
play a judge. Every call is recorded in ``calls`` for assertions. Token counts are
whitespace-separated words. ``stream`` yields the reply of one sample in a few chunks, as a
streaming model would.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from collabrl.backends.errors import IncompleteOutputError, RequestRejectedError
from collabrl.backends.streaming import split_chunks
from collabrl.metrics.framing import find_call_id
from collabrl.types import Completion, GenerationParams, Message, Usage

ReplyFn = Callable[
    [Sequence[Message], GenerationParams, int], "str | Completion | Awaitable[str | Completion]"
]


@dataclass(frozen=True)
class ScriptedCall:
    messages: tuple[Message, ...]
    params: GenerationParams


def _count_tokens(text: str) -> int:
    return len(text.split())


def _mentions(messages: Sequence[Message], text: str | None) -> bool:
    """True when ``text`` is None or some message of the request contains it."""
    return text is None or any(text in m.content for m in messages)


class ScriptedBackend:
    """Replies with ``reply_fn(messages, params, sample_index)``, or the first matching rule, or
    the next item of ``replies`` (cycled, one per sample). A rule is (needle, reply) or
    (needle, reply, request_needle): it matches when the last message contains the needle and,
    if given, some message of the request (system prompt included) the request needle."""

    def __init__(
        self,
        replies: Sequence[str] | str = ("OK.",),
        *,
        rules: Sequence[tuple[str, str] | tuple[str, str, str | None]] = (),
        reply_fn: ReplyFn | None = None,
        name: str = "scripted",
    ) -> None:
        self._replies = [replies] if isinstance(replies, str) else list(replies)
        if not self._replies and reply_fn is None and not rules:
            raise ValueError("ScriptedBackend needs replies, rules or a reply_fn")
        self._rules = list(rules)
        self._reply_fn = reply_fn
        self._next = 0
        self.name = name
        self.calls: list[ScriptedCall] = []

    @classmethod
    def from_config(cls, cfg) -> ScriptedBackend:
        return cls(
            cfg.replies, rules=[(r.contains, r.reply, r.request_contains) for r in cfg.rules]
        )

    def identity(self) -> dict[str, str]:
        return {"kind": "scripted", "model": self.name}

    async def aclose(self) -> None:
        return None

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        self.calls.append(ScriptedCall(tuple(messages), params))
        prompt_tokens = sum(_count_tokens(m.content) for m in messages)
        out = []
        for i in range(params.n):
            reply = await self._reply(messages, params, params.first_sample + i)
            if isinstance(reply, str):
                reply = Completion(
                    text=reply,
                    finish_reason="stop",
                    usage=Usage(
                        prompt_tokens=prompt_tokens if i == 0 else 0,
                        completion_tokens=_count_tokens(reply),
                    ),
                )
            out.append(reply)
        return out

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        """Sample ``params.first_sample``'s reply in a few chunks (a cut Completion raises)."""
        self.calls.append(ScriptedCall(tuple(messages), params))
        reply = await self._reply(messages, params, params.first_sample)
        text = reply if isinstance(reply, str) else reply.text
        for chunk in split_chunks(text):
            await asyncio.sleep(0)  # let other requests run between chunks, like a real stream
            yield chunk
        if not isinstance(reply, str) and reply.finish_reason == "incomplete":
            raise IncompleteOutputError("the scripted reply was cut before it finished")

    async def _reply(
        self, messages: Sequence[Message], params: GenerationParams, index: int
    ) -> str | Completion:
        reply = await self._pick(messages, params, index)
        if not isinstance(reply, str) or "$call_id" not in reply:
            return reply
        call = find_call_id("\n".join(m.content for m in messages))
        return reply if call is None else reply.replace("$call_id", call)

    async def _pick(
        self, messages: Sequence[Message], params: GenerationParams, index: int
    ) -> str | Completion:
        if self._reply_fn is not None:
            result = self._reply_fn(messages, params, index)
            return await result if inspect.isawaitable(result) else result
        last = messages[-1].content if messages else ""
        for needle, reply, *context in self._rules:
            if needle in last and _mentions(messages, context[0] if context else None):
                return reply
        if not self._replies:
            raise RequestRejectedError(f"no scripted rule matches the last message: {last[:80]!r}")
        reply = self._replies[self._next % len(self._replies)]
        self._next += 1
        return reply

    def __repr__(self) -> str:
        return f"ScriptedBackend(name={self.name!r}, calls={len(self.calls)})"
