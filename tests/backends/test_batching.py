"""AsyncBatcher: grouping, batch size limits, the worker thread, errors, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from collabrl.backends.batching import AsyncBatcher


class Recorder:
    """A batch function that records each batch and the thread it ran on."""

    def __init__(self, delay_s: float = 0.0, rows=lambda item: 1) -> None:
        self.batches: list[list] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.rows = rows

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return [("done", item) for item in items]

    def batch_rows(self) -> list[int]:
        return [sum(self.rows(item) for item in batch) for batch in self.batches]


async def test_each_caller_gets_its_own_result():
    run = Recorder()
    batcher = AsyncBatcher(run, max_batch_size=4, max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [("done", i) for i in range(10)]
    assert sorted(len(b) for b in run.batches) == [2, 4, 4]
    await batcher.aclose()


async def test_batches_never_exceed_max_rows_and_keep_keys_apart():
    def rows(item):
        return item[1]

    run = Recorder(delay_s=0.005, rows=rows)
    batcher = AsyncBatcher(
        run, max_batch_size=5, max_wait_s=0.005, key=lambda item: item[0], rows=rows
    )
    items = [(key, 1 + i % 3) for i in range(40) for key in ("a", "b")]
    results = await asyncio.gather(*(batcher.submit(item) for item in items))
    assert results == [("done", item) for item in items]
    assert max(run.batch_rows()) <= 5
    assert all(len({item[0] for item in batch}) == 1 for batch in run.batches)
    await batcher.aclose()


async def test_items_waiting_while_the_worker_is_busy_form_full_batches():
    gate = threading.Event()
    run = Recorder()

    def blocked_first(items):
        gate.wait(5)
        return run(items)

    batcher = AsyncBatcher(blocked_first, max_batch_size=8, max_wait_s=0.001)
    first = asyncio.ensure_future(batcher.submit(-1))
    await asyncio.sleep(0.05)  # the first batch is running (blocked) now
    later = []
    for i in range(16):  # trickle in, slower than max_wait_s
        later.append(asyncio.ensure_future(batcher.submit(i)))
        await asyncio.sleep(0.003)
    gate.set()
    await asyncio.gather(first, *later)
    assert [len(b) for b in run.batches] == [1, 8, 8]
    await batcher.aclose()


async def test_batch_function_runs_on_one_dedicated_thread():
    run = Recorder(delay_s=0.001)
    batcher = AsyncBatcher(run, max_batch_size=2, max_wait_s=0, thread_name="bt-test")
    await asyncio.gather(*(batcher.submit(i) for i in range(9)))
    assert len(run.threads) == 1
    (name,) = run.threads
    assert name.startswith("bt-test") and name != threading.current_thread().name
    await batcher.aclose()


async def test_event_loop_stays_responsive_while_a_batch_runs():
    batcher = AsyncBatcher(Recorder(delay_s=0.4), max_batch_size=4, max_wait_s=0)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    await batcher.submit(1)
    task.cancel()
    assert ticks >= 15
    await batcher.aclose()


async def test_a_failing_batch_fails_exactly_its_own_callers():
    def run(items):
        if "boom" in items:
            raise ValueError("bad batch")
        return [item.upper() for item in items]

    batcher = AsyncBatcher(run, max_batch_size=8, max_wait_s=0.01, key=lambda item: item[0])
    items = ["boom", "bar", "baz", "foo", "fig"]  # key = first letter: b... fail, f... pass
    results = await asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True)
    assert [type(r).__name__ for r in results[:3]] == ["ValueError"] * 3
    assert results[3:] == ["FOO", "FIG"]
    await batcher.aclose()


async def test_an_exception_result_fails_only_its_item():
    def run(items):
        return [KeyError(item) if item == 2 else item * 10 for item in items]

    batcher = AsyncBatcher(run, max_batch_size=8, max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[1] == 10 and results[3] == 30
    assert isinstance(results[2], KeyError)
    await batcher.aclose()


async def test_wrong_result_count_is_an_error_for_the_batch():
    batcher = AsyncBatcher(lambda items: items[:-1], max_batch_size=4, max_wait_s=0.01)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))
    await batcher.aclose()


async def test_cancelled_callers_are_left_out_of_the_batch():
    run = Recorder()
    batcher = AsyncBatcher(run, max_batch_size=8, max_wait_s=0.05)
    keep = asyncio.ensure_future(batcher.submit("keep"))
    drop = asyncio.ensure_future(batcher.submit("drop"))
    await asyncio.sleep(0)
    drop.cancel()
    assert await keep == ("done", "keep")
    assert run.batches == [["keep"]]
    await batcher.aclose()


async def test_item_larger_than_a_batch_is_refused():
    batcher = AsyncBatcher(Recorder(), max_batch_size=2, rows=lambda item: item)
    with pytest.raises(ValueError, match="1..2 rows"):
        await batcher.submit(3)
    await batcher.aclose()


async def test_aclose_finishes_queued_work_then_refuses_new_items():
    run = Recorder()
    batcher = AsyncBatcher(run, max_batch_size=8, max_wait_s=10.0)  # would wait 10 s
    pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0)
    started = time.monotonic()
    await batcher.aclose()
    assert time.monotonic() - started < 1.0
    assert [p.result() for p in pending] == [("done", i) for i in range(3)]
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(4)


def test_works_across_successive_event_loops():
    run = Recorder()
    batcher = AsyncBatcher(run, max_batch_size=4, max_wait_s=0.001)
    assert asyncio.run(batcher.submit(1)) == ("done", 1)
    assert asyncio.run(batcher.submit(2)) == ("done", 2)
    asyncio.run(batcher.aclose())
    assert len(run.threads) == 1
