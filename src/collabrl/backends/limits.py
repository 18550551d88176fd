"""Concurrency and request-rate limits, one set per backend.

Simulation fans out into thousands of calls; the only throttle is here, so every caller can
simply ``asyncio.gather`` its work. The concurrency limit bounds calls in flight; the optional
requests-per-minute limit spaces call starts evenly. The limiter sits *inside* the retry wrapper:
a call waiting out a backoff does not hold a slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager

from collabrl.backends.base import Backend, BackendWrapper
from collabrl.backends.streaming import stream_text
from collabrl.types import Completion, GenerationParams, Message


class RequestRateLimiter:
    """Spaces acquisitions at least ``60 / requests_per_minute`` seconds apart (no bursts)."""

    def __init__(self, requests_per_minute: float, clock=time.monotonic, sleep=asyncio.sleep):
        self.interval = 60.0 / requests_per_minute
        self._clock = clock
        self._sleep = sleep
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = self._clock()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + self.interval
        if wait > 0:
            await self._sleep(wait)


class LimitedBackend(BackendWrapper):
    """At most ``max_concurrency`` calls in flight, optionally ``requests_per_minute`` starts."""

    def __init__(
        self, inner: Backend, max_concurrency: int, requests_per_minute: float | None = None
    ) -> None:
        super().__init__(inner)
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._rate = RequestRateLimiter(requests_per_minute) if requests_per_minute else None
        self.in_flight = 0
        self.peak_in_flight = 0

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        async with self._slot():
            return await self.inner.generate(messages, params)

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        """A streamed reply holds its slot until the stream ends."""
        async with self._slot(), aclosing(stream_text(self.inner, messages, params)) as chunks:
            async for chunk in chunks:
                yield chunk

    @asynccontextmanager
    async def _slot(self):
        async with self._slots:
            if self._rate is not None:
                await self._rate.acquire()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
