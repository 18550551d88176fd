"""The response cache: every key field matters, only finished outputs are stored, single flight."""

import asyncio

import pytest

from collabrl.backends.cache import CachedBackend, ResponseCache, request_key
from collabrl.backends.errors import TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.types import Completion, GenerationParams, Message

MSG = [Message(role="user", content="hello")]
IDENT = {"kind": "openai", "model": "m", "base_url": "http://a"}


def counting_backend():
    """Replies 'reply-<k>' with k counting every sample the model was asked for."""
    counter = {"samples": 0}

    def reply(messages, params, index):
        counter["samples"] += 1
        return f"reply-{counter['samples']}"

    return ScriptedBackend(reply_fn=reply), counter


@pytest.fixture
def cache(tmp_path):
    c = ResponseCache(tmp_path / "cache.sqlite")
    yield c
    c.close()


@pytest.mark.parametrize(
    "change",
    [
        {"identity": {**IDENT, "model": "other"}},
        {"identity": {**IDENT, "base_url": "http://b"}},
        {"identity": {**IDENT, "kind": "anthropic"}},
        {"messages": [Message(role="user", content="hello!")]},
        {"messages": [Message(role="system", content="hello")]},
        {"params": GenerationParams(temperature=0.5)},
        {"params": GenerationParams(top_p=0.9)},
        {"params": GenerationParams(max_tokens=7)},
        {"params": GenerationParams(stop=("\n",))},
        {"params": GenerationParams(seed=1)},
    ],
)
def test_key_changes_with_every_field(change):
    base = {"identity": IDENT, "messages": MSG, "params": GenerationParams()}
    changed = {**base, **change}
    assert request_key(**base) != request_key(**changed)


def test_key_ignores_n_and_first_sample():
    assert request_key(IDENT, MSG, GenerationParams(n=1)) == request_key(
        IDENT, MSG, GenerationParams(n=5, first_sample=3)
    )


async def test_hits_skip_the_model_and_survive_reopening(tmp_path):
    inner, counter = counting_backend()
    path = tmp_path / "c.sqlite"
    first = await CachedBackend(inner, ResponseCache(path)).generate(MSG, GenerationParams(n=2))
    hits = []
    again = await CachedBackend(inner, ResponseCache(path), on_hit=hits.append).generate(
        MSG, GenerationParams(n=2)
    )
    assert [c.text for c in again] == [c.text for c in first]
    assert all(c.cached for c in again) and not any(c.cached for c in first)
    assert counter["samples"] == 2 and hits == [2]


async def test_sample_index_is_part_of_the_key(cache):
    inner, counter = counting_backend()
    backend = CachedBackend(inner, cache)
    a = await backend.generate(MSG, GenerationParams(first_sample=0))
    b = await backend.generate(MSG, GenerationParams(first_sample=1))
    assert a[0].text != b[0].text
    # Asking for samples 0..2 reuses 0 and 1, draws only index 2.
    three = await backend.generate(MSG, GenerationParams(n=3))
    assert [c.text for c in three[:2]] == [a[0].text, b[0].text]
    assert counter["samples"] == 3
    assert inner.calls[-1].params.n == 1 and inner.calls[-1].params.first_sample == 2


async def test_errors_refusals_and_cut_outputs_are_not_cached(cache):
    outcomes = [
        TransientError("boom", status=500),
        Completion(text="I can't help", finish_reason="refusal"),
        Completion(text="half", finish_reason="incomplete"),
        "good",
    ]

    def reply(messages, params, index):
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    backend = CachedBackend(ScriptedBackend(reply_fn=reply), cache)
    with pytest.raises(TransientError):
        await backend.generate(MSG, GenerationParams())
    assert len(cache) == 0
    for expected in ("refusal", "incomplete"):
        [out] = await backend.generate(MSG, GenerationParams())
        assert out.finish_reason == expected and len(cache) == 0
    [out] = await backend.generate(MSG, GenerationParams())
    assert out.text == "good" and len(cache) == 1
    with pytest.raises(ValueError):
        cache.put("k", Completion(text="x", finish_reason="refusal"))


async def test_concurrent_identical_requests_share_one_upstream_call(cache):
    async def slow(messages, params, index):
        await asyncio.sleep(0.05)
        return f"sample-{index}"

    inner = ScriptedBackend(reply_fn=slow)
    backend = CachedBackend(inner, cache)
    results = await asyncio.gather(*(backend.generate(MSG, GenerationParams()) for _ in range(10)))
    assert len(inner.calls) == 1
    assert {r[0].text for r in results} == {"sample-0"}


async def test_waiters_recover_when_the_owner_is_cancelled(cache):
    async def slow(messages, params, index):
        await asyncio.sleep(0.1)
        return "late"

    backend = CachedBackend(ScriptedBackend(reply_fn=slow), cache)
    owner = asyncio.create_task(backend.generate(MSG, GenerationParams()))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(backend.generate(MSG, GenerationParams()))
    await asyncio.sleep(0.01)
    owner.cancel()
    [out] = await waiter
    assert out.text == "late"
