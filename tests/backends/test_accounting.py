"""Usage accounting and the per-role backend stack built from a config."""

import pytest
from rich.console import Console

from collabrl.backends.accounting import MeteredBackend, UsageMeter
from collabrl.backends.errors import RequestRejectedError, TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.backends.stack import Roles
from collabrl.config import PriceConfig, load_config
from collabrl.types import GenerationParams, Message

MSG = [Message(role="user", content="one two three")]


async def test_meter_counts_tokens_failures_and_cost():
    meter = UsageMeter()
    usage = meter.role("judge", PriceConfig(input_per_mtok=1.0, output_per_mtok=4.0))
    replies = ["a b", RequestRejectedError("no", status=400)]

    def reply(messages, params, index):
        item = replies.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    backend = MeteredBackend(ScriptedBackend(reply_fn=reply), usage)
    await backend.generate(MSG, GenerationParams())
    with pytest.raises(RequestRejectedError):
        await backend.generate(MSG, GenerationParams())
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (2, 3, 2)
    assert usage.failures == {"rejected:400": 1}
    assert usage.cost == pytest.approx((3 * 1.0 + 2 * 4.0) / 1e6)
    assert meter.total_cost == usage.cost
    text = _render(meter)
    assert "judge" in text and "rejected:400=1" in text


def _render(meter):
    console = Console(width=200, record=True)
    console.print(meter.table())
    return console.export_text()


def _config(tmp_path, *extra):
    return load_config(
        None,
        [
            "roles.policy.kind=scripted",
            "roles.policy.replies=[p1]",
            "roles.user.kind=scripted",
            "roles.user.replies=[u1]",
            f"cache.path={tmp_path / 'cache.sqlite'}",
            *extra,
        ],
    )


async def test_roles_cache_hits_are_metered_and_free(tmp_path):
    config = _config(tmp_path)
    for _ in range(2):
        async with Roles(config) as roles:
            [out] = await roles["user"].generate(MSG, GenerationParams())
            usage = roles.meter.roles["user"]
            assert out.text == "u1"
    # Second run: served from the cache, counted as a hit, no fresh tokens.
    assert (usage.calls, usage.cache_hits, usage.completion_tokens) == (1, 1, 0)


async def test_cache_hits_count_requests_like_calls(tmp_path):
    """A request for n samples is one call and, served from the cache, one hit (not n): the
    usage table never shows more cache hits than calls; the samples are counted apart."""
    config = _config(tmp_path)
    params = GenerationParams(n=3, temperature=1.0)
    for _ in range(2):
        async with Roles(config) as roles:
            outs = await roles["user"].generate(MSG, params)
            await roles["user"].generate(MSG, params.model_copy(update={"first_sample": 1}))
            usage = roles.meter.roles["user"]
    assert all(c.cached for c in outs)
    assert (usage.calls, usage.cache_hits, usage.samples, usage.cached_samples) == (2, 2, 6, 6)
    assert usage.to_dict()["cached_samples"] == 6
    row = next(line for line in _render(roles.meter).splitlines() if "user" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[:3] == ["user", "2", "2"]  # role, calls, cache hits


async def test_roles_retry_transient_errors_and_count_them(tmp_path):
    config = _config(tmp_path, "roles.user.retry.initial_backoff_s=0.001", "cache.enabled=false")
    failures = [TransientError("503", status=503)]

    def reply(messages, params, index):
        if failures:
            raise failures.pop()
        return "fine"

    async with Roles(config, models={"user": ScriptedBackend(reply_fn=reply)}) as roles:
        [out] = await roles["user"].generate(MSG, GenerationParams())
        assert out.text == "fine"
        assert roles.meter.roles["user"].retries == 1
        assert roles.meter.roles["user"].failures == {}


async def test_roles_on_the_same_server_share_one_limit(tmp_path):
    config = _config(tmp_path, "roles.user.replies=[p1]", "roles.user.generation.temperature=0.2")
    async with Roles(config) as roles:
        roles["policy"], roles["user"]
        assert len(roles._shared) == 1
    config = _config(tmp_path, "roles.user.max_concurrency=2")
    async with Roles(config) as roles:
        roles["policy"], roles["user"]
        assert len(roles._shared) == 2


async def test_given_live_models_are_never_cached(tmp_path):
    config = _config(tmp_path)
    replies = iter(["v1", "v2"])
    live = ScriptedBackend(reply_fn=lambda m, p, i: next(replies))
    async with Roles(config, models={"policy": live}) as roles:
        first = await roles["policy"].generate(MSG, GenerationParams())
        second = await roles["policy"].generate(MSG, GenerationParams())
    assert [first[0].text, second[0].text] == ["v1", "v2"]
