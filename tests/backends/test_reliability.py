"""The "LLM calls" cases of reliability.md, end to end: Roles -> wrappers -> OpenAI client ->
a real HTTP server on loopback. Request counts are read from the server's own log."""

import logging
import time

import pytest

from collabrl.backends.errors import (
    DeadlineExceededError,
    QuotaExceededError,
    RequestRejectedError,
    TransientError,
)
from collabrl.backends.stack import Roles
from collabrl.cli import main
from collabrl.config import load_config
from collabrl.testing.fake_openai import Behaviour, FakeOpenAIServer
from collabrl.types import GenerationParams, Message

KEY_ENV = "COLLABRL_RELIABILITY_KEY"
CANARY = "sk-canary-reliability-7f3a9c1e"
HELLO = [Message(role="user", content="hello")]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, CANARY)


def config(server, tmp_path, *extra):
    return load_config(
        None,
        [
            "roles.user.kind=openai",
            "roles.user.model=fake-model",
            f"roles.user.base_url={server.base_url}",
            f"roles.user.api_key_env={KEY_ENV}",
            "roles.user.retry.initial_backoff_s=0.05",
            "roles.user.retry.max_backoff_s=0.2",
            "roles.user.retry.attempt_timeout_s=2",
            "roles.user.retry.deadline_s=10",
            f"cache.path={tmp_path / 'cache.sqlite'}",
            *extra,
        ],
    )


async def ask(cfg, params=None):
    params = params or GenerationParams()
    async with Roles(cfg) as roles:
        try:
            return await roles["user"].generate(HELLO, params), roles.meter.roles["user"]
        except Exception as error:
            error.usage = roles.meter.roles["user"]
            raise


async def test_429_waits_at_least_retry_after(tmp_path):
    with FakeOpenAIServer(script=[Behaviour.rate_limited(2)]) as server:
        started = time.monotonic()
        [reply], usage = await ask(config(server, tmp_path))
        assert time.monotonic() - started >= 2.0
        assert server.request_count == 2 and usage.retries == 1 and reply.text


async def test_quota_error_stops_at_once_with_a_clear_message(tmp_path):
    with FakeOpenAIServer(script=[Behaviour.quota_exceeded()] * 3) as server:
        with pytest.raises(QuotaExceededError, match="quota") as info:
            await ask(config(server, tmp_path))
        assert server.request_count == 1
        assert info.value.usage.failures == {"quota_exceeded:429": 1}


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_client_errors_are_not_retried_and_name_the_status(tmp_path, status):
    with FakeOpenAIServer(script=[status] * 3) as server:
        with pytest.raises(RequestRejectedError, match=str(status)):
            await ask(config(server, tmp_path))
        assert server.request_count == 1


@pytest.mark.parametrize("fault", [500, 503, "reset", "cut"])
async def test_server_faults_are_retried_with_backoff_then_succeed(tmp_path, fault):
    with FakeOpenAIServer(script=[fault, fault]) as server:
        [reply], usage = await ask(config(server, tmp_path))
        assert server.request_count == 3 and usage.retries == 2 and reply.finish_reason == "stop"
        times = [r.time for r in server.requests]
        assert times[1] - times[0] >= 0.05 * 0.75  # backed off before retrying


async def test_persistent_faults_raise_the_last_error_after_capped_attempts(tmp_path):
    with FakeOpenAIServer(script=[500, 500, 503]) as server:
        with pytest.raises(TransientError, match="503"):
            await ask(config(server, tmp_path, "roles.user.retry.max_attempts=3"))
        assert server.request_count == 3


async def test_hanging_server_hits_attempt_timeout_and_deadline(tmp_path):
    with FakeOpenAIServer(script=lambda request: Behaviour.hang(30)) as server:
        cfg = config(
            server,
            tmp_path,
            "roles.user.retry.attempt_timeout_s=0.3",
            "roles.user.retry.deadline_s=1.0",
        )
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await ask(cfg)
        assert time.monotonic() - started < 1.6
        assert server.request_count >= 2  # the first attempt timed out and was retried


async def test_cut_output_is_never_cached_as_a_finished_turn(tmp_path):
    cut = Behaviour(finish_reason=None, text="half a")
    with FakeOpenAIServer(script=[cut, "ok"]) as server:
        [reply], _ = await ask(config(server, tmp_path))
        assert reply.finish_reason == "stop" and reply.text != "half a"
        [again], usage = await ask(config(server, tmp_path))
        assert again.cached and again.text == reply.text and server.request_count == 2


async def test_refusals_are_returned_but_not_cached(tmp_path):
    with FakeOpenAIServer(script=[Behaviour(refusal="I can't help with that.")]) as server:
        [reply], _ = await ask(config(server, tmp_path))
        assert reply.finish_reason == "refusal"
        [again], _ = await ask(config(server, tmp_path))
        assert not again.cached and server.request_count == 2


async def test_rerun_sends_no_request_it_already_made(tmp_path):
    with FakeOpenAIServer() as server:
        params = GenerationParams(n=3, temperature=1.0)
        first, _ = await ask(config(server, tmp_path), params)
        again, usage = await ask(config(server, tmp_path), params)
        assert [c.text for c in again] == [c.text for c in first]
        assert server.request_count == 1
        assert (usage.calls, usage.cache_hits, usage.cached_samples) == (1, 1, 3)


def test_canary_key_appears_nowhere(tmp_path, capsys, caplog, monkeypatch):
    """A failing call (401 echoing the key) and a crash, at DEBUG: no trace of the key."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    echo = Behaviour.error(401, "Incorrect API key provided: {api_key}")
    with FakeOpenAIServer(script=[echo]) as server:
        cfg_file = tmp_path / "c.yaml"
        cfg_file.write_text(
            f"roles:\n  user:\n    kind: openai\n    model: m\n    base_url: {server.base_url}\n"
            f"cache:\n  path: {tmp_path / 'cache.sqlite'}\n"
        )
        with caplog.at_level(logging.DEBUG):
            assert main(["--log-level", "DEBUG", "models", "check", "--config", str(cfg_file)]) == 1
            assert server.requests[0].api_key == CANARY  # the key really was sent
            logging.getLogger("collabrl.test").exception("crash while holding %s", CANARY)
    out = capsys.readouterr()
    assert "401" in out.out
    cfg = load_config(cfg_file)
    written = [out.out, out.err, caplog.text, repr(cfg), cfg.model_dump_json()]
    written += [p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(CANARY in text for text in written)
