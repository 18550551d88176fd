"""A content-addressed SQLite cache of model responses, and the wrapper that uses it.

Every sample is stored under a key that hashes everything that could change the answer: the
backend's identity (kind, model, base URL), the full messages, every sampling setting, the seed
and the sample's index. Rerunning a job therefore sends no request it already made, while S
independent futures from one prefix (different sample indices) stay independent. Only finished
outputs are stored: errors, refusals and cut outputs never are. Concurrent identical requests
are coalesced so that one upstream call serves them all (single flight).

Streamed replies (``stream``) are served from the cache as one chunk when there is a hit; a miss
is streamed from the model and not stored, since a text stream carries no finish reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path

from collabrl.backends.base import Backend, BackendWrapper
from collabrl.backends.errors import BackendError
from collabrl.backends.streaming import stream_text
from collabrl.types import Completion, GenerationParams, Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    completion TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


def request_key(
    identity: dict[str, str], messages: Sequence[Message], params: GenerationParams
) -> str:
    """Hash of one request minus ``n`` and ``first_sample`` (those pick sample indices)."""
    settings = params.model_dump(exclude={"n", "first_sample"})
    payload = {
        "identity": identity,
        "messages": [m.to_openai() for m in messages],
        "params": settings,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def sample_key(request: str, index: int) -> str:
    return f"{request}:{index}"


class CacheError(RuntimeError):
    """The cache file cannot be opened or created; the message names the file."""


class ResponseCache:
    """Completions by sample key in one SQLite file (WAL mode; safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise CacheError(f"cache {path} cannot be opened: {error}") from None

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else Completion.model_validate_json(row[0])

    def put(self, key: str, completion: Completion) -> None:
        if not completion.is_cacheable:
            raise ValueError(f"refusing to cache a {completion.finish_reason!r} completion")
        stored = completion.model_copy(update={"cached": False})
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, completion) VALUES (?, ?)",
            (key, stored.model_dump_json()),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()


OnHit = Callable[[int], None]


class CachedBackend(BackendWrapper):
    """Serves samples from a ``ResponseCache``; asks the inner backend only for missing ones."""

    def __init__(self, inner: Backend, cache: ResponseCache, *, on_hit: OnHit | None = None):
        super().__init__(inner)
        self.cache = cache
        self._on_hit = on_hit
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        request = request_key(self.identity(), messages, params)
        indices = range(params.first_sample, params.first_sample + params.n)
        results: dict[int, Completion | asyncio.Future[Completion]] = {}
        missing: list[int] = []
        for index in indices:
            key = sample_key(request, index)
            hit = self.cache.get(key)
            if hit is not None:
                results[index] = hit.model_copy(update={"cached": True})
            elif key in self._in_flight:
                results[index] = self._in_flight[key]
            else:
                missing.append(index)
        hits = sum(isinstance(r, Completion) for r in results.values())
        if hits and self._on_hit is not None:
            self._on_hit(hits)
        if missing:
            fresh = await self._fetch(messages, params, request, missing)
            results.update(zip(missing, fresh, strict=True))
        return [await self._resolve(results[i], messages, params, i) for i in indices]

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        """A cached sample ``params.first_sample`` as one chunk, else the model's stream."""
        key = sample_key(request_key(self.identity(), messages, params), params.first_sample)
        hit = self.cache.get(key)
        if hit is not None:
            if self._on_hit is not None:
                self._on_hit(1)
            yield hit.text
            return
        async with aclosing(stream_text(self.inner, messages, params)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _resolve(
        self,
        item: Completion | asyncio.Future[Completion],
        messages: Sequence[Message],
        params: GenerationParams,
        index: int,
    ) -> Completion:
        """A cached or fresh completion, or the result of another caller's identical request."""
        if isinstance(item, Completion):
            return item
        try:
            return await asyncio.shield(item)
        except asyncio.CancelledError:
            if not item.cancelled():
                raise  # this caller itself was cancelled
        # The caller that owned the request was cancelled: ask for this sample ourselves.
        retry = params.model_copy(update={"n": 1, "first_sample": index})
        return (await self.generate(messages, retry))[0]

    async def _fetch(
        self, messages: Sequence[Message], params: GenerationParams, request: str, missing: list[int]
    ) -> list[Completion]:
        loop = asyncio.get_running_loop()
        keys = [sample_key(request, i) for i in missing]
        futures = [loop.create_future() for _ in keys]
        self._in_flight.update(zip(keys, futures))
        try:
            ask = params.model_copy(update={"n": len(missing), "first_sample": missing[0]})
            fresh = await self.inner.generate(messages, ask)
            if len(fresh) != len(missing):
                raise BackendError(f"backend returned {len(fresh)} samples, {len(missing)} asked")
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except BaseException as error:
            for future in futures:
                future.set_exception(error)
                future.exception()  # mark retrieved: the owner re-raises it below
            raise
        finally:
            for key in keys:
                self._in_flight.pop(key, None)
        for key, future, completion in zip(keys, futures, fresh, strict=True):
            if completion.is_cacheable:
                self.cache.put(key, completion)
            future.set_result(completion)
        return fresh

