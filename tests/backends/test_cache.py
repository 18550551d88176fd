"""The response cache: every key field matters, only finished outputs are stored, single flight;
record and replay modes; the file alone is a complete, portable recording."""

import asyncio
import shutil
import sqlite3

import pytest

from collabrl.backends.cache import CachedBackend, CacheError, ResponseCache, request_key
from collabrl.backends.errors import ReplayMissError, TransientError
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


async def test_record_asks_again_overwrites_and_then_serves_its_own_recording(tmp_path):
    path = tmp_path / "c.sqlite"
    inner, counter = counting_backend()
    [old] = await CachedBackend(inner, ResponseCache(path)).generate(MSG, GenerationParams())
    recorder = CachedBackend(inner, ResponseCache(path), mode="record")
    [fresh] = await recorder.generate(MSG, GenerationParams())
    [again] = await recorder.generate(MSG, GenerationParams())  # same run: one answer per request
    assert (old.text, fresh.text, again.text) == ("reply-1", "reply-2", "reply-2")
    assert not fresh.cached and again.cached and counter["samples"] == 2
    recorder.cache.close()
    [later] = await CachedBackend(inner, ResponseCache(path)).generate(MSG, GenerationParams())
    assert later.text == "reply-2" and counter["samples"] == 2


async def test_replay_serves_hits_and_a_miss_fails_without_asking(tmp_path):
    path = tmp_path / "c.sqlite"
    inner, counter = counting_backend()
    await CachedBackend(inner, ResponseCache(path)).generate(MSG, GenerationParams(n=2))
    replay = CachedBackend(inner, ResponseCache(path), mode="replay", role="judge")
    assert [c.text for c in await replay.generate(MSG, GenerationParams(n=2))] == [
        "reply-1",
        "reply-2",
    ]
    long = [Message(role="system", content="s"), Message(role="user", content="why\n" + "x" * 200)]
    for messages, params, sample in [
        (MSG, GenerationParams(n=3), 2),
        (long, GenerationParams(), 0),
    ]:
        with pytest.raises(ReplayMissError) as caught:
            await replay.generate(messages, params)
        message = str(caught.value)
        assert f"role 'judge', kind scripted, model scripted, sample {sample}" in message
        assert str(path) in message and caught.value.reason == "replay_miss"
        assert not caught.value.retryable
    assert "last message (user) 'why " + "x" * 76 + "'" in message  # first 80 characters
    assert counter["samples"] == 2 and len(inner.calls) == 1  # only the recording call


async def test_replay_stream_serves_a_hit_and_refuses_a_miss(tmp_path):
    path = tmp_path / "c.sqlite"
    inner, _ = counting_backend()
    await CachedBackend(inner, ResponseCache(path)).generate(MSG, GenerationParams())
    replay = CachedBackend(inner, ResponseCache(path), mode="replay")
    assert [chunk async for chunk in replay.stream(MSG, GenerationParams())] == ["reply-1"]
    with pytest.raises(ReplayMissError, match="sample 1"):
        [chunk async for chunk in replay.stream(MSG, GenerationParams(first_sample=1))]
    assert len(inner.calls) == 1


def test_replay_refuses_a_missing_file_instead_of_creating_it(tmp_path):
    with pytest.raises(CacheError, match="nope.sqlite does not exist"):
        ResponseCache(tmp_path / "nope.sqlite", read_only=True)
    assert not (tmp_path / "nope.sqlite").exists()


async def test_replay_reads_a_read_only_recording_and_writes_nothing(tmp_path, read_only_folder):
    path = tmp_path / "shared" / "c.sqlite"
    inner, counter = counting_backend()
    recording = ResponseCache(path)
    await CachedBackend(inner, recording).generate(MSG, GenerationParams(n=2))
    recording.close()  # folds the log in: the .sqlite file alone is handed over
    contents = read_only_folder(path)
    before = contents()
    assert sorted(before[1]) == ["c.sqlite"]
    cache = ResponseCache(path, read_only=True)
    assert cache.uri == f"{path.as_uri()}?mode=ro&immutable=1"  # no writer: a frozen file
    replay = CachedBackend(inner, cache, mode="replay")
    assert [c.text for c in await replay.generate(MSG, GenerationParams(n=2))] == [
        "reply-1",
        "reply-2",
    ]
    with pytest.raises(ReplayMissError):
        await replay.generate(MSG, GenerationParams(first_sample=2))
    with pytest.raises(CacheError, match="c.sqlite is open read-only"):
        cache.put("k", Completion(text="t", finish_reason="stop"))
    assert contents() == before  # no -wal, no -shm while open (root too)
    cache.close()
    assert contents() == before and counter["samples"] == 2


async def test_replay_beside_a_running_writer_reads_its_unfolded_log(tmp_path):
    path = tmp_path / "c.sqlite"
    writer = ResponseCache(path)
    writer.put("early", Completion(text="in the log", finish_reason="stop"))
    reader = ResponseCache(path, read_only=True)
    assert reader.uri.endswith("?mode=ro")  # not immutable: that would ignore the -wal file
    writer.put("late", Completion(text="after the reader opened", finish_reason="stop"))
    assert reader.get("early").text == "in the log"
    assert reader.get("late").text == "after the reader opened"
    reader.close()
    writer.close()
    assert not path.with_name("c.sqlite-wal").exists()  # the writer still folds its log


@pytest.mark.parametrize("kind", ["other table", "not sqlite"])
def test_replay_refuses_a_file_that_is_not_a_response_cache(tmp_path, kind):
    path = tmp_path / "other.sqlite"
    if kind == "other table":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
        db.close()
    else:
        path.write_text("key,completion\n")
    before = path.read_bytes()
    with pytest.raises(CacheError, match=f"^{path} is not a collabrl response cache"):
        ResponseCache(path, read_only=True)
    assert [p.name for p in tmp_path.iterdir()] == ["other.sqlite"]
    assert path.read_bytes() == before  # no responses table was created, nothing else written


@pytest.mark.parametrize("other_process_open", [False, True])
async def test_the_sqlite_file_alone_holds_every_answer_after_close(tmp_path, other_process_open):
    """Closing folds the write-ahead log into the file, even while another process (here: a
    connection) keeps the file open and with it the -wal file."""
    path = tmp_path / "run" / "c.sqlite"
    cache = ResponseCache(path)
    other = sqlite3.connect(path) if other_process_open else None
    if other is not None:
        other.execute("SELECT COUNT(*) FROM responses").fetchone()  # connects lazily
    inner, _ = counting_backend()
    await CachedBackend(inner, cache).generate(MSG, GenerationParams(n=50))
    cache.close()
    assert path.with_name("c.sqlite-wal").exists() == other_process_open
    copy = tmp_path / "copy" / "c.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)  # the .sqlite file only: no -wal, no -shm
    replayed = await CachedBackend(inner, ResponseCache(copy), mode="replay").generate(
        MSG, GenerationParams(n=50)
    )
    assert [c.text for c in replayed] == [f"reply-{i}" for i in range(1, 51)]
    if other is not None:
        other.close()
