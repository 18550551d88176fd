"""Running many coroutines with bounded memory: a fixed pool of workers over an iterable.

``asyncio.gather`` over ten thousand conversations would create them all at once; the backends'
limits would keep the calls in check, but not the memory. ``map_bounded`` keeps ``limit`` items
in progress and pulls the next one as soon as a slot frees, so the work stays saturated while
memory stays flat in the number of items.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def map_bounded(fn: Callable[[T], Awaitable[None]], items: Iterable[T], limit: int) -> None:
    """Await ``fn(item)`` for every item, at most ``limit`` at a time; the first error cancels all."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:  # one shared iterator: each item is taken by exactly one worker
            await fn(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(limit)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
