"""Streamed replies: the text of one sample, chunk by chunk, as the model writes it.

``Backend.generate`` returns finished completions, which is what simulation and training need.
A person co-writing with a model (``collabrl study``) should instead watch the reply appear.
Backends that can stream (OpenAI-compatible, Anthropic, scripted) therefore have an optional
``stream(messages, params) -> AsyncIterator[str]``, and the wrappers forward it. Callers use
:func:`stream_text`, never ``backend.stream`` directly: it uses the backend's ``stream`` when there
is one and otherwise yields the whole reply of ``generate`` as one chunk.

A stream is always one sample (``params.n`` is ignored). A stream that ends before the model
finished (a cut connection, no finish reason) raises ``IncompleteOutputError`` after the chunks
it did get: the caller must not keep them as a finished turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Protocol, runtime_checkable

from collabrl.backends.base import Backend
from collabrl.backends.errors import IncompleteOutputError
from collabrl.types import GenerationParams, Message


@runtime_checkable
class StreamingBackend(Protocol):
    """A backend that can also stream one sample's text."""

    def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]: ...


async def stream_text(
    backend: Backend, messages: Sequence[Message], params: GenerationParams
) -> AsyncIterator[str]:
    """The reply's text in chunks: streamed when ``backend`` can, else one chunk from generate."""
    if isinstance(backend, StreamingBackend):
        async with aclosing(backend.stream(messages, params)) as chunks:
            async for chunk in chunks:
                yield chunk
        return
    completion = (await backend.generate(messages, params.model_copy(update={"n": 1})))[0]
    if completion.finish_reason == "incomplete":
        raise IncompleteOutputError("the model's output was cut before it finished")
    yield completion.text


def split_chunks(text: str, pieces: int = 4) -> list[str]:
    """``text`` in about ``pieces`` chunks at word boundaries that join back to ``text``."""
    words = text.split(" ")
    size = max(1, -(-len(words) // pieces))
    parts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [p + " " for p in parts[:-1]] + parts[-1:]
