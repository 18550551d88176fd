"""Retrying failed model calls: the one place that decides whether and when to try again.

Rules (following openai-python and inspect_ai): rate limits (429) wait at least the server's
Retry-After; timeouts, 408/409/5xx, connection resets and cut outputs back off exponentially with
jitter, capped; rejected requests (400/401/403/404) and exhausted quotas are raised at once.
Each attempt has its own timeout and the whole call has a deadline that holds even when the
server hangs. The last error is raised when attempts run out, so callers can record its reason.

Streamed replies are retried only until their first chunk arrives: after that the person
watching has seen text, and a failure is raised to the caller as it is. The streaming backends'
own per-read timeouts (``attempt_timeout_s``) bound a stream that hangs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing

from collabrl.backends.base import Backend, BackendWrapper
from collabrl.backends.errors import (
    AttemptTimeoutError,
    BackendError,
    DeadlineExceededError,
    IncompleteOutputError,
)
from collabrl.backends.streaming import stream_text
from collabrl.config import RetryConfig
from collabrl.types import Completion, GenerationParams, Message

log = logging.getLogger(__name__)

OnRetry = Callable[[BackendError, float], None]


def backoff_delay(
    config: RetryConfig, attempt: int, error: BackendError, rng: random.Random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    base = min(config.max_backoff_s, config.initial_backoff_s * 2 ** (attempt - 1))
    if error.retry_after is not None:
        # Never earlier than the server asked; spread clients out a little beyond it.
        return error.retry_after + rng.uniform(0, config.jitter) * min(error.retry_after, base)
    return base * (1 + rng.uniform(-config.jitter, config.jitter))


class RetryingBackend(BackendWrapper):
    """Retries retryable ``BackendError``s within ``max_attempts`` and ``deadline_s``."""

    def __init__(
        self,
        inner: Backend,
        config: RetryConfig,
        *,
        on_retry: OnRetry | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self.config = config
        self._on_retry = on_retry
        self._rng = random.Random(seed)
        self._clock = clock

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        deadline = self._clock() + self.config.deadline_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(messages, params, deadline)
            except BackendError as error:
                delay = self._next_delay(error, attempt, deadline)
                log.info(
                    "retrying after %s (attempt %d, waiting %.2fs)", error.reason, attempt, delay
                )
                if self._on_retry is not None:
                    self._on_retry(error, delay)
                await asyncio.sleep(delay)

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        """Chunks of one reply; failures before the first chunk are retried like ``generate``."""
        deadline = self._clock() + self.config.deadline_s
        attempt = 0
        while True:
            attempt += 1
            async with aclosing(stream_text(self.inner, messages, params)) as chunks:
                try:
                    first = await anext(chunks, None)
                except BackendError as error:
                    failure, delay = error, self._next_delay(error, attempt, deadline)
                else:
                    if first is not None:
                        yield first
                    async for chunk in chunks:
                        yield chunk
                    return
            log.info(
                "retrying a stream after %s (attempt %d, waiting %.2fs)",
                failure.reason,
                attempt,
                delay,
            )
            if self._on_retry is not None:
                self._on_retry(failure, delay)
            await asyncio.sleep(delay)

    async def _attempt(
        self, messages: Sequence[Message], params: GenerationParams, deadline: float
    ) -> list[Completion]:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceededError(f"deadline of {self.config.deadline_s}s passed")
        limit = min(self.config.attempt_timeout_s, remaining)
        try:
            completions = await asyncio.wait_for(self.inner.generate(messages, params), limit)
        except TimeoutError:
            if limit < self.config.attempt_timeout_s:
                raise DeadlineExceededError(
                    f"deadline of {self.config.deadline_s}s passed during an attempt"
                ) from None
            raise AttemptTimeoutError(
                f"attempt took longer than {self.config.attempt_timeout_s}s"
            ) from None
        if any(c.finish_reason == "incomplete" for c in completions):
            raise IncompleteOutputError("the model's output was cut before it finished")
        return completions

    def _next_delay(self, error: BackendError, attempt: int, deadline: float) -> float:
        """The wait before the next attempt, or re-raise when no further attempt is allowed."""
        if not error.retryable or isinstance(error, DeadlineExceededError):
            raise error
        if attempt >= self.config.max_attempts:
            raise error
        delay = backoff_delay(self.config, attempt, error, self._rng)
        if self._clock() + delay >= deadline:
            raise DeadlineExceededError(
                f"deadline of {self.config.deadline_s}s leaves no time to retry after "
                f"{error.reason}: {error}"
            ) from error
        return delay
