"""Group concurrent requests into batches for a blocking batch function (a local model).

A local model is far faster per token when it decodes many rows at once than when it serves
one request at a time, but the callers are independent coroutines. ``AsyncBatcher`` lets each
caller ``await batcher.submit(item)`` while a single dispatcher task collects the items into
batches and runs the blocking batch function on ONE dedicated worker thread, so the event loop
stays responsive while the model works and there is never more than one batch in flight.

Batching rules:
- items only share a batch when ``key(item)`` is equal (compatible settings);
- a batch holds at most ``max_batch_size`` rows (an item declares its row count via ``rows``);
- a batch is handed to the worker when the worker is free and the batch is full, or its oldest
  item has waited ``max_wait_s``. While the worker is busy, batches keep filling, so a long
  generation is followed by a full batch rather than by many small ones.

The batch function returns one result per item; a result that is an exception is raised to
that item's caller only. If the batch function itself raises, every caller of that batch (and
no one else) gets the exception. ``aclose`` runs what is already queued, then stops the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending(Generic[T]):
    key: Hashable
    created: float
    items: list[T] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    rows: int = 0


class AsyncBatcher(Generic[T, R]):
    """Batches ``submit``-ted items for ``run_batch``, which runs on one worker thread."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch_size: int = 16,
        max_wait_s: float = 0.02,
        key: Callable[[T], Hashable] = lambda item: None,
        rows: Callable[[T], int] = lambda item: 1,
        thread_name: str = "collabrl-batcher",
    ) -> None:
        if max_batch_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_s >= 0")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._key = key
        self._rows = rows
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._queue: list[_Pending[T]] = []  # oldest first
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result from the batch it ends up in."""
        if self._closing:
            raise RuntimeError("AsyncBatcher is closed")
        rows = self._rows(item)
        if not 1 <= rows <= self.max_batch_size:
            raise ValueError(f"an item must have 1..{self.max_batch_size} rows, got {rows}")
        self._bind_loop()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        pending = self._batch_for(self._key(item), rows)
        pending.items.append(item)
        pending.futures.append(future)
        pending.rows += rows
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def aclose(self) -> None:
        """Run the batches already queued, then stop the dispatcher and the worker thread."""
        self._closing = True
        if self._dispatcher is not None and self._wakeup is not None:
            self._wakeup.set()
            if self._loop is asyncio.get_running_loop():
                await self._dispatcher
        self._executor.shutdown(wait=False)

    def _bind_loop(self) -> None:
        """Start the dispatcher on the running loop (again, if a previous loop has ended)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._dispatcher is not None and not self._dispatcher.done():
            return
        self._drop_abandoned()
        if self._queue and self._loop is not loop:
            raise RuntimeError("AsyncBatcher has pending items on another event loop")
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._dispatcher = loop.create_task(self._dispatch(), name="collabrl-batcher")

    def _batch_for(self, key: Hashable, rows: int) -> _Pending[T]:
        """The open batch with this key and room for ``rows`` more, or a new one."""
        for pending in self._queue:
            if pending.key == key and pending.rows + rows <= self.max_batch_size:
                return pending
        pending = _Pending[T](key=key, created=time.monotonic())
        self._queue.append(pending)
        return pending

    def _drop_abandoned(self) -> None:
        """Forget queued batches whose callers have all gone (cancelled)."""
        self._queue = [p for p in self._queue if not all(f.done() for f in p.futures)]

    async def _dispatch(self) -> None:
        while True:
            pending = await self._next_ready()
            if pending is None:
                return
            await self._run(pending)

    async def _next_ready(self) -> _Pending[T] | None:
        """Wait for a batch that is full or old enough; None once closing with nothing left."""
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            self._drop_abandoned()
            if not self._queue:
                if self._closing:
                    return None
                await self._wakeup.wait()
                continue
            now = time.monotonic()
            for pending in self._queue:
                full = pending.rows >= self.max_batch_size
                if full or self._closing or now - pending.created >= self.max_wait_s:
                    self._queue.remove(pending)
                    return pending
            oldest = min(p.created for p in self._queue)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), oldest + self.max_wait_s - now)

    async def _run(self, pending: _Pending[T]) -> None:
        """Run one batch on the worker thread and hand each caller its own result."""
        live = [i for i, f in enumerate(pending.futures) if not f.done()]  # skip cancelled
        items = [pending.items[i] for i in live]
        futures = [pending.futures[i] for i in live]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"batch function returned {len(results)} results for {len(items)} items"
                )
        except Exception as exc:  # the whole batch failed: tell exactly its callers
            results = [exc] * len(items)
        for future, result in zip(futures, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
