"""Usage accounting per role: calls, tokens, cache hits, retries, failures and cost.

The ``MeteredBackend`` wrapper sits outermost around each role's backend and records what
reached the caller; the retry and cache wrappers report retries and hits through the meter's
callbacks. At the end of a command, ``UsageMeter.table()`` renders one row per role; cost uses the
optional per-role price table from the config (currency units per million tokens). A streamed
reply counts as one call and one sample, with its time and failure, but no tokens (a text stream
does not report them).

Calls and cache hits are counted in the same unit, requests: a call asking for n samples is one
call, and one cache hit when the cache answered any of its samples, so hits never exceed calls.
The samples the cache served are counted apart (``cached_samples``, next to ``samples``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from rich.table import Table

from collabrl.backends.base import Backend, BackendWrapper
from collabrl.backends.errors import BackendError
from collabrl.backends.streaming import stream_text
from collabrl.config import PriceConfig
from collabrl.types import Completion, GenerationParams, Message


@dataclass
class RoleUsage:
    """Running totals for one role."""

    calls: int = 0
    samples: int = 0
    cache_hits: int = 0
    cached_samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    price: PriceConfig | None = None

    def record_cache_hit(self, samples: int) -> None:
        """One call the cache answered ``samples`` samples of (the cache's ``on_hit``)."""
        self.cache_hits += 1
        self.cached_samples += samples

    @property
    def cost(self) -> float | None:
        if self.price is None:
            return None
        return self.price.cost(self.prompt_tokens, self.completion_tokens)

    def to_dict(self) -> dict:
        return {
            "calls": self.calls,
            "samples": self.samples,
            "cache_hits": self.cache_hits,
            "cached_samples": self.cached_samples,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "retries": self.retries,
            "failures": dict(self.failures),
            "seconds": round(self.seconds, 3),
            "cost": self.cost,
        }


class UsageMeter:
    """Usage of every role in one run."""

    def __init__(self) -> None:
        self.roles: dict[str, RoleUsage] = {}

    def role(self, name: str, price: PriceConfig | None = None) -> RoleUsage:
        usage = self.roles.setdefault(name, RoleUsage())
        if price is not None:
            usage.price = price
        return usage

    @property
    def total_cost(self) -> float | None:
        costs = [u.cost for u in self.roles.values() if u.cost is not None]
        return sum(costs) if costs else None

    def to_dict(self) -> dict[str, dict]:
        return {name: usage.to_dict() for name, usage in self.roles.items()}

    def table(self, title: str = "Model usage") -> Table:
        table = Table(title=title)
        for column in (
            "role",
            "calls",
            "cache hits",
            "prompt tok",
            "completion tok",
            "retries",
            "failures",
            "cost",
        ):
            table.add_column(column, justify="left" if column == "role" else "right")
        for name, u in sorted(self.roles.items()):
            failures = ", ".join(f"{k}={v}" for k, v in sorted(u.failures.items())) or "0"
            cost = "-" if u.cost is None else f"{u.cost:.4f}"
            table.add_row(
                name,
                str(u.calls),
                str(u.cache_hits),
                f"{u.prompt_tokens:,}",
                f"{u.completion_tokens:,}",
                str(u.retries),
                failures,
                cost,
            )
        return table


class MeteredBackend(BackendWrapper):
    """Counts calls, fresh tokens, failures and time for one role."""

    def __init__(self, inner: Backend, usage: RoleUsage) -> None:
        super().__init__(inner)
        self.usage = usage

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        self.usage.calls += 1
        started = time.monotonic()
        try:
            completions = await self.inner.generate(messages, params)
        except BackendError as error:
            self.usage.failures[error.reason] += 1
            raise
        finally:
            self.usage.seconds += time.monotonic() - started
        self.usage.samples += len(completions)
        for c in completions:
            if not c.cached:
                self.usage.prompt_tokens += c.usage.prompt_tokens
                self.usage.completion_tokens += c.usage.completion_tokens
        return completions

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        self.usage.calls += 1
        started = time.monotonic()
        try:
            async with aclosing(stream_text(self.inner, messages, params)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BackendError as error:
            self.usage.failures[error.reason] += 1
            raise
        finally:
            self.usage.seconds += time.monotonic() - started
        self.usage.samples += 1
