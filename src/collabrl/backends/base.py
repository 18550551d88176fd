"""The one interface every language model sits behind.

A backend turns a list of messages and sampling settings into ``n`` completions. Concrete
backends (OpenAI-compatible servers, Anthropic, local transformers models, scripted replies)
only talk to their model and translate its failures into the typed errors of
``collabrl.backends.errors``; retries, limits, caching and accounting are wrappers around any
backend (see ``collabrl.backends.stack``), so no caller ever retries by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from collabrl.types import Completion, GenerationParams, Message


@runtime_checkable
class Backend(Protocol):
    """``async generate(messages, params) -> list[Completion]`` with exactly ``params.n`` items."""

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]: ...

    def identity(self) -> dict[str, str]:
        """What distinguishes this model from others in a cache key: kind, model, base URL.

        Never contains secrets.
        """
        ...

    async def aclose(self) -> None:
        """Release connections, threads or models held by the backend."""
        ...


class BackendWrapper:
    """Base for wrappers: forwards ``identity`` and ``aclose`` to the wrapped backend."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def identity(self) -> dict[str, str]:
        return self.inner.identity()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"
