"""AnthropicBackend against the real fake server's /v1/messages over loopback."""

from __future__ import annotations

import sys
import time

import pytest

from collabrl.backends.anthropic import AnthropicBackend
from collabrl.backends.errors import (
    AttemptTimeoutError,
    QuotaExceededError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from collabrl.config import AnthropicBackendConfig, RetryConfig
from collabrl.testing.fake_openai import Behaviour, FakeOpenAIServer
from collabrl.types import GenerationParams, Message

# An optional extra: skip without it. Importing it here also keeps its slow import (1-2 s) out
# of the first test's run time.
pytest.importorskip("anthropic")

KEY_ENV = "COLLABRL_TEST_ANTHROPIC_API_KEY"
KEY = "sk-ant-test-0123456789"
TIMEOUT_S = 0.4
CHAT = [
    Message(role="system", content="You are terse."),
    Message(role="user", content="hi"),
    Message(role="assistant", content="hello"),
    Message(role="system", content="Answer in French."),
    Message(role="user", content="how are you"),
]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
async def backend_for():
    backends: list[AnthropicBackend] = []

    def make(server: FakeOpenAIServer) -> AnthropicBackend:
        config = AnthropicBackendConfig(
            kind="anthropic",
            model="claude-test",
            base_url=server.url,
            api_key_env=KEY_ENV,
            retry=RetryConfig(attempt_timeout_s=TIMEOUT_S),
        )
        backends.append(AnthropicBackend(config))
        return backends[-1]

    yield make
    for backend in backends:
        await backend.aclose()


async def test_system_messages_go_to_the_system_parameter(fake, backend_for):
    server = fake()
    params = GenerationParams(max_tokens=40, stop=("STOP",), seed=3)
    (completion,) = await backend_for(server).generate(CHAT, params)
    assert completion.finish_reason == "stop" and completion.text.endswith("how are you")
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/messages"
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert (body["model"], body["max_tokens"], body["stop_sequences"]) == (
        "claude-test",
        40,
        ["STOP"],
    )
    assert "seed" not in body and "n" not in body


async def test_n_samples_are_parallel_requests(fake, backend_for):
    server = fake(latency=0.3)
    started = time.monotonic()
    completions = await backend_for(server).generate(CHAT, GenerationParams(n=3))
    assert time.monotonic() - started < 0.55  # three requests side by side, not one after another
    assert len(completions) == 3 and server.request_count == 3


@pytest.mark.parametrize(("asked", "sent"), [(1.7, 1.0), (1.0, 1.0), (0.3, 0.3), (0.0, 0.0)])
async def test_temperature_is_clamped_to_anthropic_range(fake, backend_for, asked, sent):
    server = fake()
    await backend_for(server).generate(CHAT, GenerationParams(temperature=asked))
    body = server.requests[0].body
    assert body["temperature"] == sent and "top_p" not in body


async def test_top_p_is_sent_only_below_one(fake, backend_for):
    server = fake()
    await backend_for(server).generate(CHAT, GenerationParams(top_p=0.9))
    assert server.requests[0].body["top_p"] == 0.9


@pytest.mark.parametrize(
    ("behaviour", "finish_reason"),
    [
        (Behaviour(text="fine thanks"), "stop"),
        (Behaviour(finish_reason="stop_sequence"), "stop"),
        (Behaviour(text="one two three four five six"), "length"),
        (Behaviour(refusal="I can't help with that."), "refusal"),
        (Behaviour(finish_reason=None), "incomplete"),
        (Behaviour(finish_reason="pause_turn"), "incomplete"),
    ],
)
async def test_stop_reasons(fake, backend_for, behaviour, finish_reason):
    server = fake(script=[behaviour])
    (completion,) = await backend_for(server).generate(CHAT, GenerationParams(max_tokens=5))
    assert completion.finish_reason == finish_reason


async def test_usage(fake, backend_for):
    server = fake(reply_fn=lambda request, i: "a b c")
    completions = await backend_for(server).generate(CHAT, GenerationParams(n=2))
    # input: "You are terse." + "Answer in French." + "hi" + "hello" + "how are you" = 11 words
    assert [(c.usage.prompt_tokens, c.usage.completion_tokens) for c in completions] == [
        (11, 3)
    ] * 2


@pytest.mark.parametrize(
    ("behaviour", "error_type"),
    [
        (Behaviour.error(529, "Overloaded", type="overloaded_error"), TransientError),
        (500, TransientError),
        (Behaviour.rate_limited(2), RateLimitedError),
        (400, RequestRejectedError),
        (404, RequestRejectedError),
        (
            Behaviour.error(400, "Your credit balance is too low to access the API."),
            QuotaExceededError,
        ),
    ],
)
async def test_http_errors_are_typed(fake, backend_for, behaviour, error_type):
    server = fake(script=[behaviour])
    with pytest.raises(error_type) as caught:
        await backend_for(server).generate(CHAT, GenerationParams())
    status = behaviour if isinstance(behaviour, int) else behaviour.status
    assert type(caught.value) is error_type and caught.value.status == status
    assert f"HTTP {status}" in str(caught.value) and "claude-test" in str(caught.value)
    if error_type is RateLimitedError:
        assert caught.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("reset", TransientError), ("cut", TransientError), ("hang", AttemptTimeoutError)],
)
async def test_broken_connections(fake, backend_for, fault, error_type):
    server = fake(script=[fault])
    started = time.monotonic()
    with pytest.raises(error_type):
        await backend_for(server).generate(CHAT, GenerationParams())
    assert time.monotonic() - started < TIMEOUT_S + 0.5


async def test_a_key_echoed_by_the_server_is_redacted(fake, backend_for):
    server = fake(script=[Behaviour.error(401, "invalid x-api-key {api_key}")])
    with pytest.raises(RequestRejectedError) as caught:
        await backend_for(server).generate(CHAT, GenerationParams())
    assert server.requests[0].api_key == KEY
    assert KEY not in str(caught.value) and "HTTP 401" in str(caught.value)


async def test_the_key_is_read_at_call_time(fake, backend_for, monkeypatch):
    server = fake()
    backend = backend_for(server)
    await backend.generate(CHAT, GenerationParams())
    monkeypatch.setenv(KEY_ENV, "sk-ant-rotated-9876")
    await backend.generate(CHAT, GenerationParams())
    assert [r.api_key for r in server.requests] == [KEY, "sk-ant-rotated-9876"]
    assert KEY not in repr(backend)
    assert backend.identity() == {
        "kind": "anthropic",
        "model": "claude-test",
        "base_url": server.url,
    }


def test_a_missing_sdk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)
    config = AnthropicBackendConfig(kind="anthropic", model="claude-test")
    with pytest.raises(ImportError, match=r"pip install 'collabrl\[anthropic\]'"):
        AnthropicBackend(config)
