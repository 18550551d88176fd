"""map_bounded: every item once, never more than the limit at a time, errors cancel the rest."""

import asyncio

import pytest

from collabrl.aio import map_bounded


async def test_each_item_once_within_the_limit():
    running, peak, seen = 0, 0, []

    async def work(item):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (item % 3))
        seen.append(item)
        running -= 1

    await map_bounded(work, range(50), limit=4)
    assert sorted(seen) == list(range(50)) and peak == 4


async def test_items_are_pulled_lazily():
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    async def work(item):
        await asyncio.sleep(0)

    await map_bounded(work, items(), limit=2)
    assert len(pulled) == 100


async def test_first_error_cancels_the_others():
    cancelled = []

    async def work(item):
        if item == 0:
            raise RuntimeError("boom")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    with pytest.raises(RuntimeError, match="boom"):
        await map_bounded(work, range(5), limit=3)
    assert cancelled


async def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        await map_bounded(lambda item: asyncio.sleep(0), [1], limit=0)
