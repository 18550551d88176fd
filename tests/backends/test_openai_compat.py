"""OpenAICompatBackend against the real fake server over loopback."""

from __future__ import annotations

import email.utils
import time

import pytest

from collabrl.backends.errors import (
    AttemptTimeoutError,
    QuotaExceededError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from collabrl.backends.http_api import is_local_url, public_url, retry_after_seconds, split_evenly
from collabrl.backends.openai_compat import OpenAICompatBackend
from collabrl.config import OpenAIBackendConfig, RetryConfig
from collabrl.testing.fake_openai import Behaviour, FakeOpenAIServer
from collabrl.types import GenerationParams, Message

KEY_ENV = "COLLABRL_TEST_OPENAI_API_KEY"
KEY = "sk-test-openai-0123456789"
HELLO = [Message(role="system", content="be kind"), Message(role="user", content="hello there")]
TIMEOUT_S = 0.4


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
async def backend_for():
    backends: list[OpenAICompatBackend] = []

    def make(server: FakeOpenAIServer | None = None, **fields) -> OpenAICompatBackend:
        fields.setdefault("base_url", server.base_url if server else None)
        config = OpenAIBackendConfig(
            kind="openai",
            model="fake-model",
            api_key_env=KEY_ENV,
            retry=RetryConfig(attempt_timeout_s=TIMEOUT_S),
            **fields,
        )
        backends.append(OpenAICompatBackend(config))
        return backends[-1]

    yield make
    for backend in backends:
        await backend.aclose()


async def test_n_is_honoured_in_one_request(fake, backend_for):
    server = fake()
    params = GenerationParams(
        n=3, temperature=0.7, top_p=0.9, max_tokens=50, stop=("END",), seed=5, first_sample=2
    )
    completions = await backend_for(server, extra_body={"top_k": 20}).generate(HELLO, params)
    assert len(completions) == 3 and len({c.text for c in completions}) == 3
    assert all(c.finish_reason == "stop" for c in completions)
    (request,) = server.requests
    body = request.body
    assert body["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hello there"},
    ]
    assert (body["n"], body["temperature"], body["top_p"], body["max_tokens"]) == (3, 0.7, 0.9, 50)
    assert (body["stop"], body["seed"], body["top_k"]) == (["END"], 7, 20)


async def test_usage_prompt_once_and_completion_split(fake, backend_for):
    server = fake(reply_fn=lambda request, i: "word " * (i + 1))
    completions = await backend_for(server).generate(HELLO, GenerationParams(n=3))
    assert [c.usage.prompt_tokens for c in completions] == [4, 0, 0]
    assert [c.usage.completion_tokens for c in completions] == [2, 2, 2]  # 6 billed, split evenly
    assert split_evenly(7, 3) == [3, 2, 2]


async def test_n_is_emulated_when_the_server_ignores_it(fake, backend_for):
    server = fake(ignore_n=True)
    backend = backend_for(server)
    params = GenerationParams(n=4, temperature=1.0, seed=10)
    completions = await backend.generate(HELLO, params)
    assert len(completions) == 4 and len({c.text for c in completions}) == 4
    assert server.request_count == 1 + 3
    bodies = [r.body for r in server.requests]
    assert bodies[0]["n"] == 4 and [b["n"] for b in bodies[1:]] == [1, 1, 1]
    assert sorted(b["seed"] for b in bodies) == [10, 11, 12, 13]
    assert await backend.generate(HELLO, params) == completions  # same seeds, same samples
    assert server.request_count == 4 + 4  # now known to ignore n: one request per sample


@pytest.mark.parametrize(
    ("behaviour", "error_type", "retry_after"),
    [
        (Behaviour.rate_limited(2), RateLimitedError, 2.0),
        (Behaviour.rate_limited(retry_after_ms=1500), RateLimitedError, 1.5),
        (Behaviour.rate_limited(), RateLimitedError, None),
        (Behaviour.quota_exceeded(), QuotaExceededError, None),
        (400, RequestRejectedError, None),
        (401, RequestRejectedError, None),
        (403, RequestRejectedError, None),
        (404, RequestRejectedError, None),
        (422, RequestRejectedError, None),
        (408, TransientError, None),
        (500, TransientError, None),
        (503, TransientError, None),
    ],
)
async def test_http_errors_are_typed(fake, backend_for, behaviour, error_type, retry_after):
    server = fake(script=[behaviour])
    with pytest.raises(error_type) as caught:
        await backend_for(server).generate(HELLO, GenerationParams())
    error = caught.value
    status = behaviour if isinstance(behaviour, int) else behaviour.status
    assert type(error) is error_type and error.status == status
    assert f"HTTP {status}" in str(error) and "fake-model" in str(error)
    assert server.base_url in str(error)
    assert error.retry_after == retry_after
    assert error.retryable == (error_type in (RateLimitedError, TransientError))
    assert server.request_count == 1  # one attempt: retrying is the wrappers' job


async def test_retry_after_as_http_date(fake, backend_for):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = fake(script=[Behaviour.rate_limited(when)])
    with pytest.raises(RateLimitedError) as caught:
        await backend_for(server).generate(HELLO, GenerationParams())
    assert 25 <= caught.value.retry_after <= 31


@pytest.mark.parametrize("fault", ["reset", "cut"])
async def test_broken_connections_are_transient(fake, backend_for, fault):
    server = fake(script=[fault])
    with pytest.raises(TransientError) as caught:
        await backend_for(server).generate(HELLO, GenerationParams())
    assert type(caught.value) is TransientError and "fake-model" in str(caught.value)


async def test_hang_hits_the_attempt_timeout(fake, backend_for):
    server = fake(script=["hang"])
    started = time.monotonic()
    with pytest.raises(AttemptTimeoutError):
        await backend_for(server).generate(HELLO, GenerationParams())
    assert time.monotonic() - started < TIMEOUT_S + 0.5


async def test_a_key_echoed_by_the_server_is_redacted(fake, backend_for):
    server = fake(script=[Behaviour.error(401, "Incorrect API key provided: {api_key}")])
    with pytest.raises(RequestRejectedError) as caught:
        await backend_for(server).generate(HELLO, GenerationParams())
    assert server.requests[0].api_key == KEY  # the server did echo it
    assert KEY not in str(caught.value) and "***" in str(caught.value)
    assert "HTTP 401" in str(caught.value)


@pytest.mark.parametrize(
    ("behaviour", "finish_reason", "text"),
    [
        (Behaviour(finish_reason=None, text="half a"), "incomplete", "half a"),
        (Behaviour(finish_reason="something_new"), "incomplete", None),
        (Behaviour(refusal="I can't help with that."), "refusal", "I can't help with that."),
        (Behaviour(finish_reason="content_filter", text=""), "refusal", ""),
        (Behaviour(finish_reason="eos", text="done"), "stop", "done"),
        (Behaviour(text="a b c d e f"), "length", "a b c"),
    ],
)
async def test_finish_reasons(fake, backend_for, behaviour, finish_reason, text):
    server = fake(script=[behaviour])
    (completion,) = await backend_for(server).generate(HELLO, GenerationParams(max_tokens=3))
    assert completion.finish_reason == finish_reason
    if text is not None:
        assert completion.text == text


async def test_the_key_is_read_at_call_time(fake, backend_for, monkeypatch):
    server = fake()
    backend = backend_for(server)
    await backend.generate(HELLO, GenerationParams())
    monkeypatch.setenv(KEY_ENV, "sk-test-rotated-9876")
    await backend.generate(HELLO, GenerationParams())
    assert [r.api_key for r in server.requests] == [KEY, "sk-test-rotated-9876"]


async def test_a_local_server_needs_no_key(fake, backend_for, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    server = fake()
    await backend_for(server).generate(HELLO, GenerationParams())
    assert server.requests[0].api_key == "EMPTY"


async def test_a_missing_key_for_a_remote_server_names_the_variable(backend_for, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    backend = backend_for(base_url="https://llm.example.invalid/v1")
    with pytest.raises(RequestRejectedError, match=KEY_ENV):
        await backend.generate(HELLO, GenerationParams())


async def test_identity_and_repr_hold_no_secrets(fake, backend_for):
    server = fake()
    backend = backend_for(server)
    assert backend.identity() == {
        "kind": "openai",
        "model": "fake-model",
        "base_url": server.base_url,
    }
    assert KEY not in repr(backend) and KEY_ENV in repr(backend)
    remote = backend_for(base_url="https://user:pw-secret@llm.example.com/v1")
    assert "pw-secret" not in repr(remote) + str(remote.identity())
    assert backend_for(base_url=None).identity()["base_url"] == "https://api.openai.com/v1"


def test_helpers():
    assert is_local_url("http://127.0.0.1:8000/v1") and is_local_url("http://localhost/v1")
    assert is_local_url("http://10.1.2.3:8000/v1") and is_local_url("http://[::1]:80")
    assert not is_local_url("https://api.openai.com/v1") and not is_local_url(None)
    assert public_url("http://a:b@host:1/v1") == "http://host:1/v1"
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
