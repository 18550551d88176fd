"""Retry decisions: what is retried, how long it waits, and that deadlines hold."""

import asyncio
import random
import time

import pytest

from collabrl.backends.errors import (
    AttemptTimeoutError,
    DeadlineExceededError,
    IncompleteOutputError,
    QuotaExceededError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
    error_for_status,
)
from collabrl.backends.retry import RetryingBackend, backoff_delay
from collabrl.backends.scripted import ScriptedBackend
from collabrl.config import RetryConfig
from collabrl.types import Completion, GenerationParams, Message

MSG = [Message(role="user", content="hi")]
FAST = RetryConfig(
    max_attempts=4,
    initial_backoff_s=0.01,
    max_backoff_s=0.05,
    jitter=0.0,
    attempt_timeout_s=1.0,
    deadline_s=5.0,
)


def failing_then_ok(errors):
    """A reply function raising the given errors in order, then answering."""
    queue = list(errors)

    def reply(messages, params, index):
        if queue:
            raise queue.pop(0)
        return "done"

    return reply


async def test_transient_errors_are_retried_then_succeed():
    inner = ScriptedBackend(reply_fn=failing_then_ok([TransientError("503", status=503)] * 2))
    retries = []
    backend = RetryingBackend(inner, FAST, on_retry=lambda e, d: retries.append(e.reason))
    [out] = await backend.generate(MSG, GenerationParams())
    assert out.text == "done"
    assert retries == ["transient:503", "transient:503"]
    assert len(inner.calls) == 3


@pytest.mark.parametrize(
    "error",
    [
        RequestRejectedError("bad request", status=400),
        RequestRejectedError("unauthorized", status=401),
        RequestRejectedError("not found", status=404),
        QuotaExceededError("insufficient_quota", status=429),
    ],
)
async def test_permanent_errors_are_not_retried(error):
    inner = ScriptedBackend(reply_fn=failing_then_ok([error]))
    backend = RetryingBackend(inner, FAST)
    with pytest.raises(type(error)) as info:
        await backend.generate(MSG, GenerationParams())
    assert len(inner.calls) == 1
    assert info.value.status == error.status


async def test_attempts_run_out_and_last_error_is_raised():
    errors = [TransientError(f"fail {i}", status=500) for i in range(10)]
    inner = ScriptedBackend(reply_fn=failing_then_ok(errors))
    with pytest.raises(TransientError, match="fail 3"):
        await RetryingBackend(inner, FAST).generate(MSG, GenerationParams())
    assert len(inner.calls) == FAST.max_attempts


async def test_hanging_attempt_times_out_and_deadline_holds():
    async def hang(messages, params, index):
        await asyncio.sleep(30)

    config = RetryConfig(
        max_attempts=10, initial_backoff_s=0.01, jitter=0, attempt_timeout_s=0.2, deadline_s=0.7
    )
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await RetryingBackend(ScriptedBackend(reply_fn=hang), config).generate(
            MSG, GenerationParams()
        )
    assert time.monotonic() - started < 1.0


async def test_single_attempt_timeout_is_typed():
    async def hang(messages, params, index):
        await asyncio.sleep(30)

    config = RetryConfig(max_attempts=1, attempt_timeout_s=0.05, deadline_s=5)
    with pytest.raises(AttemptTimeoutError):
        await RetryingBackend(ScriptedBackend(reply_fn=hang), config).generate(
            MSG, GenerationParams()
        )


async def test_retry_after_longer_than_deadline_fails_fast():
    inner = ScriptedBackend(
        reply_fn=failing_then_ok([RateLimitedError("slow down", status=429, retry_after=60)])
    )
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="rate_limited"):
        await RetryingBackend(inner, FAST).generate(MSG, GenerationParams())
    assert time.monotonic() - started < 0.5


async def test_incomplete_output_is_retried_not_returned():
    cut = Completion(text="half a sent", finish_reason="incomplete")
    replies = [cut, "whole"]
    inner = ScriptedBackend(reply_fn=lambda m, p, i: replies.pop(0))
    [out] = await RetryingBackend(inner, FAST).generate(MSG, GenerationParams())
    assert out.text == "whole" and out.finish_reason == "stop"


async def test_incomplete_output_every_time_raises():
    inner = ScriptedBackend(
        reply_fn=lambda m, p, i: Completion(text="x", finish_reason="incomplete")
    )
    with pytest.raises(IncompleteOutputError):
        await RetryingBackend(inner, FAST).generate(MSG, GenerationParams())


def test_backoff_is_exponential_capped_and_honours_retry_after():
    config = RetryConfig(initial_backoff_s=1, max_backoff_s=8, jitter=0.25)
    rng = random.Random(0)
    plain = TransientError("x")
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 8)]:
        delay = backoff_delay(config, attempt, plain, rng)
        assert base * 0.75 <= delay <= base * 1.25
    limited = RateLimitedError("x", retry_after=2.0)
    assert all(2.0 <= backoff_delay(config, 1, limited, rng) <= 2.5 for _ in range(50))


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (429, "rate limit", RateLimitedError),
        (429, '{"code": "insufficient_quota"}', QuotaExceededError),
        (402, "quota exhausted", QuotaExceededError),
        (408, "", TransientError),
        (409, "", TransientError),
        (500, "", TransientError),
        (503, "", TransientError),
        (400, "", RequestRejectedError),
        (401, "", RequestRejectedError),
        (403, "", RequestRejectedError),
        (404, "", RequestRejectedError),
    ],
)
def test_status_mapping(status, body, expected):
    error = error_for_status(status, body)
    assert type(error) is expected
    assert error.status == status
