"""A content-addressed SQLite cache of model responses, and the wrapper that uses it.

Every sample is stored under a key that hashes everything that could change the answer: the
backend's identity (kind, model, base URL), the full messages, every sampling setting, the seed
and the sample's index. Rerunning a job therefore sends no request it already made, while S
independent futures from one prefix (different sample indices) stay independent. Only finished
outputs are stored: errors, refusals and broken outputs never are. Concurrent identical requests
are coalesced so that one upstream call serves them all (single flight).

The identity holds the strings the config gives (``model``, ``base_url`` without credentials,
an ``hf_local`` path as written, never resolved), and nothing of the machine: no absolute path
of the cache or of the working folder, no key. So a cache file is a portable recording: copied
with its config to another machine, it answers the same requests there.

Modes (``cache.mode``): ``readwrite`` serves hits and stores misses; ``record`` asks the model
once per request in this run and stores the answer (overwriting older ones, which are never
served); ``replay`` serves only what is stored and turns a miss into ``ReplayMissError`` without
asking the model (the wrapper sits outside the retries, so it is not retried either). A replay
opens the file read-only and writes nothing, so a recording in a folder the user cannot write
(a read-only mount, a shared dataset) replays as it is.

Streamed replies (``stream``) are served from the cache as one chunk when there is a hit; a miss
is streamed from the model and not stored, since a text stream carries no finish reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing, suppress
from pathlib import Path
from typing import Literal

from collabrl.backends.base import Backend, BackendWrapper
from collabrl.backends.errors import BackendError, ReplayMissError
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
    """The cache file cannot be opened, created or written; the message names the file."""


class ResponseCache:
    """Completions by sample key in one SQLite file (WAL mode; safe across processes).

    ``read_only`` (replay) opens a recorded file and writes nothing, not even next to it, so a
    recording on a read-only mount, in a shared folder or owned by someone else replays as it is.
    A missing file, or one without the ``responses`` table, is a ``CacheError``; the journal mode
    and the schema are left alone, ``put`` is refused and ``close`` folds nothing.

    How it is opened (``uri``; https://www.sqlite.org/uri.html, https://www.sqlite.org/wal.html):
    a collabrl cache is in WAL mode, and every connection to a WAL file keeps a ``-wal`` file
    next to it until the last one closes and folds it in. So with no ``-wal`` file no process has
    the recording open: it is a frozen file and is read with ``mode=ro&immutable=1``, which takes
    no locks and creates no ``-shm`` or ``-wal`` file, also where the folder is writable (or the
    user is root). With a ``-wal`` file a writer may still be running (or stopped before folding
    its log): ``mode=ro`` alone then takes the shared locks and reads the log, so the writer's
    answers are seen and half-written pages never are (``immutable`` would ignore the log and
    could read pages while a checkpoint rewrites them); SQLite then needs the ``-shm`` file to
    exist or be creatable. A writer that opens the file after an immutable replay started is not
    seen by it: never record into a file while it is being replayed.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._stored_here: set[str] = set()
        if read_only:
            self.uri = self._read_only_uri()
            self._db = self._open_read_only()
        else:
            self.uri = str(path)  # a plain path: SQLite's default, read-write-create
            self._db = self._open_read_write()

    def _read_only_uri(self) -> str:
        """The URI that reads the file without writing: see the class docstring."""
        if not self.path.is_file():
            raise CacheError(
                f"cache {self.path} does not exist: replay needs a recorded cache file"
            )
        log = self.path.with_name(f"{self.path.name}-wal")
        flags = "mode=ro" if log.exists() else "mode=ro&immutable=1"
        return f"{self.path.absolute().as_uri()}?{flags}"

    def _open_read_only(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.uri, uri=True, timeout=30.0, isolation_level=None)
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'responses'"
            ).fetchone()
        except sqlite3.OperationalError as error:  # cannot open, lock or read it
            raise CacheError(f"cache {self.path} cannot be opened read-only: {error}") from None
        except sqlite3.DatabaseError as error:  # not SQLite, or damaged
            raise CacheError(f"{self.path} is not a collabrl response cache: {error}") from None
        if found is None:
            db.close()
            raise CacheError(f"{self.path} is not a collabrl response cache: no responses table")
        return db

    def _open_read_write(self) -> sqlite3.Connection:
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise CacheError(f"cache {self.path} cannot be opened: {error}") from None
        return db

    def get(self, key: str, *, stored_here: bool = False) -> Completion | None:
        """The completion under ``key``; with ``stored_here``, only one this object stored."""
        if stored_here and key not in self._stored_here:
            return None
        row = self._db.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else Completion.model_validate_json(row[0])

    def put(self, key: str, completion: Completion) -> None:
        if self.read_only:
            raise CacheError(f"cache {self.path} is open read-only (replay): nothing is stored")
        if not completion.is_cacheable:
            raise ValueError(f"refusing to cache a {completion.finish_reason!r} completion")
        stored = completion.model_copy(update={"cached": False})
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, completion) VALUES (?, ?)",
            (key, stored.model_dump_json()),
        )
        self._stored_here.add(key)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        """Fold the write-ahead log into the file first, so that the .sqlite file alone holds
        every answer (copying it without its -wal file loses nothing). A read-only cache
        folds nothing: it never wrote, and the log, if any, is its writer's to fold."""
        if self.read_only:
            self._db.close()
            return
        with suppress(sqlite3.Error):  # busy or read-only: the log stays valid, just not folded
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()


OnHit = Callable[[int], None]
CacheMode = Literal["readwrite", "record", "replay"]


class CachedBackend(BackendWrapper):
    """Serves samples from a ``ResponseCache``; asks the inner backend only for missing ones
    (in ``replay`` mode, never: a missing sample is a ``ReplayMissError``). ``role`` names the
    caller in that error."""

    def __init__(
        self,
        inner: Backend,
        cache: ResponseCache,
        *,
        on_hit: OnHit | None = None,
        mode: CacheMode = "readwrite",
        role: str | None = None,
    ):
        super().__init__(inner)
        self.cache = cache
        self.mode = mode
        self.role = role
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
            hit = self._lookup(key)
            if hit is not None:
                results[index] = hit
            elif key in self._in_flight:
                results[index] = self._in_flight[key]
            else:
                missing.append(index)
        if missing and self.mode == "replay":
            raise self._replay_miss(messages, missing[0])
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
        hit = self._lookup(key)
        if hit is not None:
            if self._on_hit is not None:
                self._on_hit(1)
            yield hit.text
            return
        if self.mode == "replay":
            raise self._replay_miss(messages, params.first_sample)
        async with aclosing(stream_text(self.inner, messages, params)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _lookup(self, key: str) -> Completion | None:
        """A stored answer; in ``record`` mode only one recorded by this run."""
        hit = self.cache.get(key, stored_here=self.mode == "record")
        return None if hit is None else hit.model_copy(update={"cached": True})

    def _replay_miss(self, messages: Sequence[Message], index: int) -> ReplayMissError:
        """The error for a sample the recording lacks: which role, model and request."""
        role = f"role {self.role!r}, " if self.role else ""
        model = ", ".join(f"{name} {value}" for name, value in self.identity().items())
        if messages:
            last = messages[-1]
            request = f"last message ({last.role}) {' '.join(last.content.split())[:80]!r}"
        else:
            request = "no messages"
        return ReplayMissError(
            f"cache.mode is replay and {self.cache.path} has no answer for {role}{model}, "
            f"sample {index}, {request}: this run differs from the recorded one (config, "
            f"prompts, tasks or code)"
        )

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
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        request: str,
        missing: list[int],
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
