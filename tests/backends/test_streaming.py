"""Streamed replies: SSE from the fake server, the fallback to generate, and the wrappers."""

from __future__ import annotations

import pytest

from collabrl.backends.accounting import MeteredBackend, UsageMeter
from collabrl.backends.cache import CachedBackend, ResponseCache, request_key, sample_key
from collabrl.backends.errors import IncompleteOutputError, RequestRejectedError, TransientError
from collabrl.backends.limits import LimitedBackend
from collabrl.backends.openai_compat import OpenAICompatBackend
from collabrl.backends.retry import RetryingBackend
from collabrl.backends.scripted import ScriptedBackend
from collabrl.backends.streaming import split_chunks, stream_text
from collabrl.config import AnthropicBackendConfig, OpenAIBackendConfig, RetryConfig
from collabrl.testing.fake_openai import FakeOpenAIServer
from collabrl.types import Completion, GenerationParams, Message

HELLO = [Message(role="user", content="hello there friend")]
FAST_RETRY = RetryConfig(initial_backoff_s=0.01, max_backoff_s=0.02, attempt_timeout_s=2)


async def collect(backend, messages=HELLO, params=None) -> list[str]:
    return [c async for c in stream_text(backend, messages, params or GenerationParams())]


class GenerateOnly:
    """A backend without ``stream``: the helper falls back to one chunk from generate."""

    def __init__(self, completion: Completion) -> None:
        self.completion = completion
        self.asked_n: list[int] = []

    async def generate(self, messages, params):
        self.asked_n.append(params.n)
        return [self.completion]

    def identity(self):
        return {"kind": "test", "model": "generate-only"}

    async def aclose(self):
        return None


def openai_backend(server: FakeOpenAIServer) -> OpenAICompatBackend:
    return OpenAICompatBackend(
        OpenAIBackendConfig(
            kind="openai",
            model="fake-model",
            base_url=server.base_url,
            api_key_env="UNSET_KEY_ENV",
            retry=RetryConfig(attempt_timeout_s=2),
        )
    )


def test_split_chunks_join_back():
    text = "one two three four five six seven"
    chunks = split_chunks(text)
    assert "".join(chunks) == text and 1 < len(chunks) <= 4
    assert split_chunks("") == [""]


async def test_fallback_yields_generate_as_one_chunk():
    backend = GenerateOnly(Completion(text="whole reply", finish_reason="stop"))
    assert await collect(backend, params=GenerationParams(n=3)) == ["whole reply"]
    assert backend.asked_n == [1]


async def test_fallback_refuses_a_cut_completion():
    backend = GenerateOnly(Completion(text="half", finish_reason="incomplete"))
    with pytest.raises(IncompleteOutputError):
        await collect(backend)


async def test_scripted_streams_in_chunks():
    backend = ScriptedBackend(["alpha beta gamma delta epsilon"])
    chunks = await collect(backend)
    assert len(chunks) > 1 and "".join(chunks) == "alpha beta gamma delta epsilon"
    assert len(backend.calls) == 1


async def test_openai_streams_server_sent_events(fake):
    server = fake(reply_fn=lambda request, i: "one two three four")
    backend = openai_backend(server)
    try:
        chunks = await collect(backend, params=GenerationParams(temperature=0.3, seed=4))
    finally:
        await backend.aclose()
    assert chunks == ["one ", "two ", "three ", "four"]
    (request,) = server.requests
    assert request.body["stream"] is True and request.body["n"] == 1 and request.body["seed"] == 4


async def test_openai_cut_stream_raises_after_the_chunks_it_got(fake):
    server = fake(script=["cut"], reply_fn=lambda request, i: "a b c d e f g h")
    backend = openai_backend(server)
    got: list[str] = []
    try:
        with pytest.raises(IncompleteOutputError):
            async for chunk in stream_text(backend, HELLO, GenerationParams()):
                got.append(chunk)
    finally:
        await backend.aclose()
    assert got and "".join(got) != "a b c d e f g h"


async def test_openai_stream_errors_are_typed(fake):
    server = fake(script=[400])
    backend = openai_backend(server)
    try:
        with pytest.raises(RequestRejectedError, match="400"):
            await collect(backend)
    finally:
        await backend.aclose()


async def test_anthropic_streams_text_deltas(fake, monkeypatch):
    pytest.importorskip("anthropic")
    from collabrl.backends.anthropic import AnthropicBackend

    server = fake(reply_fn=lambda request, i: "bonjour tout le monde")
    backend = AnthropicBackend(
        AnthropicBackendConfig(
            kind="anthropic", model="claude-test", base_url=server.url, api_key_env="UNSET_KEY_ENV"
        )
    )
    try:
        assert await collect(backend) == ["bonjour ", "tout ", "le ", "monde"]
    finally:
        await backend.aclose()
    assert server.requests[0].body["stream"] is True


async def test_retry_happens_only_before_the_first_chunk():
    failures = iter([TransientError("down"), None])

    def reply(messages, params, index):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "late but fine"

    retried: list[str] = []
    backend = RetryingBackend(
        ScriptedBackend(reply_fn=reply),
        FAST_RETRY,
        on_retry=lambda error, delay: retried.append(error.reason),
    )
    assert "".join(await collect(backend)) == "late but fine"
    assert retried == ["transient"]

    cut = ScriptedBackend(
        reply_fn=lambda m, p, i: Completion(text="x y z w", finish_reason="incomplete")
    )
    calls_before = len(cut.calls)
    with pytest.raises(IncompleteOutputError):
        await collect(RetryingBackend(cut, FAST_RETRY))
    assert len(cut.calls) == calls_before + 1  # text was already sent: no second attempt


async def test_limits_cache_and_meter_forward_streams(tmp_path):
    inner = ScriptedBackend(["streamed reply here"])
    limited = LimitedBackend(inner, max_concurrency=1)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    hits: list[int] = []
    meter = UsageMeter()
    backend = MeteredBackend(
        CachedBackend(limited, cache, on_hit=hits.append), meter.role("policy")
    )
    assert "".join(await collect(backend)) == "streamed reply here"
    assert len(cache) == 0 and limited.peak_in_flight == 1 and limited.in_flight == 0
    key = sample_key(request_key(backend.identity(), HELLO, GenerationParams()), 0)
    cache.put(key, Completion(text="from the cache", finish_reason="stop"))
    assert await collect(backend) == ["from the cache"]
    assert hits == [1] and len(inner.calls) == 1
    usage = meter.roles["policy"]
    assert (usage.calls, usage.samples) == (2, 2)
    cache.close()
