"""Concurrency and request-rate limits."""

import asyncio
import contextlib
import time

from collabrl.backends.limits import LimitedBackend, RequestRateLimiter
from collabrl.backends.scripted import ScriptedBackend
from collabrl.types import GenerationParams, Message

MSG = [Message(role="user", content="x")]


async def test_concurrency_never_exceeds_the_limit():
    async def slow(messages, params, index):
        await asyncio.sleep(0.02)
        return "ok"

    backend = LimitedBackend(ScriptedBackend(reply_fn=slow), max_concurrency=3)
    await asyncio.gather(*(backend.generate(MSG, GenerationParams()) for _ in range(20)))
    assert backend.peak_in_flight == 3
    assert backend.in_flight == 0


async def test_slot_is_released_after_an_error():
    def boom(messages, params, index):
        raise RuntimeError("model crashed")

    backend = LimitedBackend(ScriptedBackend(reply_fn=boom), max_concurrency=1)
    for _ in range(3):
        with contextlib.suppress(RuntimeError):
            await backend.generate(MSG, GenerationParams())
    assert backend.in_flight == 0


async def test_requests_per_minute_spaces_starts():
    starts = []

    def record(messages, params, index):
        starts.append(time.monotonic())
        return "ok"

    backend = LimitedBackend(
        ScriptedBackend(reply_fn=record), max_concurrency=10, requests_per_minute=600
    )  # one start per 0.1 s
    await asyncio.gather(*(backend.generate(MSG, GenerationParams()) for _ in range(5)))
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= 0.09
    assert starts[-1] - starts[0] < 0.6


async def test_rate_limiter_uses_injected_clock():
    now = [100.0]
    waits = []

    async def fake_sleep(seconds):
        waits.append(seconds)

    limiter = RequestRateLimiter(60, clock=lambda: now[0], sleep=fake_sleep)
    for _ in range(3):
        await limiter.acquire()
    assert waits == [1.0, 2.0]
