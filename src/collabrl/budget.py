"""The budget governor: caps on the money, tokens and requests one command may spend.

``budget`` in the config caps one invocation of ``generate``, ``eval`` or ``simulate``, as a
whole and optionally per role. What counts is what reached a model: ``BudgetGuard`` sits in
each role's stack inside the cache (``backends/stack.py``), so a cache hit costs nothing, and
outside the retries, so a retried call is one request. Tokens are prompt + completion tokens
of those answers; money is tokens at the role's price (a role without a price cannot be
counted in money, so a money cap with such a role is a ``ConfigError`` when it is built).

Two rules, in this order:

- **Near a cap, start nothing new.** Before a conversation starts, each capped figure is
  projected: spent + (spent / conversations finished) x (conversations in flight + 1). When a
  projection exceeds its cap, no further conversation starts; those in flight finish.
- **At a cap, call nothing new.** When a figure reaches its cap, the guard raises
  ``BudgetExceeded`` before every further call that the cache cannot answer (calls already in
  flight finish, so a cap is overshot by at most their cost). The conversation that asked is
  abandoned: it writes no conversation record, so a rerun does it again, with its answered
  requests from the cache.

The online training recipes apply the same rules with a round, update or trainer step as the
unit (``may_start`` with none in flight; ``collabrl.train.common.budgeted``).

A stopped command writes ``stopped: "budget"``, ``spent`` and ``budget`` in its manifest and
exits with status 3. Each invocation counts from zero: a rerun (with the same or a larger cap)
continues where the last one stopped and pays only for what is still to do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from collabrl.aio import map_bounded
from collabrl.backends.base import Backend, BackendWrapper
from collabrl.backends.streaming import stream_text
from collabrl.config import BudgetCaps, BudgetConfig, ConfigError, PriceConfig
from collabrl.types import Completion, GenerationParams, Message

T = TypeVar("T")
EXIT_BUDGET = 3  # the exit status of a command stopped by its budget


class BudgetExceeded(RuntimeError):
    """A cap is reached: no new model call starts. Not a ``BackendError``: nothing catches it
    as a failed call; the conversation that asked is abandoned, not recorded."""


@dataclass
class Spend:
    """What a run or one role spent: money (None without a price), tokens, requests."""

    usd: float | None = 0.0
    tokens: int = 0
    requests: int = 0

    def add(self, completions: Sequence[Completion], price: PriceConfig | None) -> None:
        prompt = sum(c.usage.prompt_tokens for c in completions)
        completion = sum(c.usage.completion_tokens for c in completions)
        self.tokens += prompt + completion
        if price is None or self.usd is None:
            self.usd = None
        else:
            self.usd += price.cost(prompt, completion)


class Budget:
    """The caps of one invocation, what was spent against them, and whether it stopped."""

    def __init__(self, config: BudgetConfig | None = None) -> None:
        self.config = config or BudgetConfig()
        self.total = Spend()
        self.roles: dict[str, Spend] = {}
        self.finished = 0
        self.abandoned = 0
        self.stopped: str | None = None  # why, once the budget stopped the run

    @property
    def capped(self) -> bool:
        return bool(self.config.caps() or self.config.roles)

    def guard(self, inner: Backend, role: str, price: PriceConfig | None) -> BudgetGuard:
        """The role's backend behind this budget; a money cap needs the role's price."""
        if price is None and self.config.usd is not None:
            raise ConfigError(
                f"budget.usd is set but role {role!r} has no price, so its spend "
                f"cannot be counted in money; set roles.{role}.price or drop "
                "budget.usd (tokens and requests caps need no price)"
            )
        self.roles.setdefault(role, Spend(usd=None if price is None else 0.0))
        return BudgetGuard(inner, self, role, price)

    def _scopes(self) -> Iterator[tuple[str, BudgetCaps, Spend]]:
        yield "budget", self.config, self.total
        for role, caps in self.config.roles.items():
            if role in self.roles:
                yield f"budget.roles.{role}", caps, self.roles[role]

    def reached(self) -> str | None:
        """The first cap reached, as ``budget.tokens=100 reached (spent 104)``, or None."""
        for scope, caps, spend in self._scopes():
            for name, cap in caps.caps().items():
                spent = getattr(spend, name) or 0
                if spent >= cap:
                    return f"{scope}.{name}={cap:g} reached (spent {spent:g})"
        return None

    def refusal(self, in_flight: int) -> str | None:
        """Why no new conversation may start with ``in_flight`` running, or None (see the
        module docstring: a cap reached, or a projection over one)."""
        if reason := self.reached():
            return reason
        if not self.finished:
            return None
        for scope, caps, spend in self._scopes():
            for name, cap in caps.caps().items():
                spent = getattr(spend, name) or 0
                projected = spent + spent / self.finished * (in_flight + 1)
                if projected > cap:
                    return (
                        f"{scope}.{name}={cap:g} would be exceeded (spent {spent:g}, "
                        f"{projected:g} projected with {in_flight + 1} more conversations)"
                    )
        return None

    def may_start(self, in_flight: int = 0) -> bool:
        """Whether one more unit of work (a conversation; a training round or step) may start
        with ``in_flight`` running; when not, records why in ``stopped``. ``finished`` counts
        the units done, so the projection is spent + spent per finished unit x (in flight + 1)."""
        if reason := self.refusal(in_flight):
            self.stopped = self.stopped or reason
            return False
        return True

    def check(self) -> None:
        """Raise ``BudgetExceeded`` when a cap is reached."""
        if reason := self.reached():
            self.stopped = self.stopped or reason
            raise BudgetExceeded(reason)

    async def map_bounded(
        self, fn: Callable[[T], Awaitable[None]], items: Iterable[T], limit: int
    ) -> None:
        """``aio.map_bounded`` that starts an item only while ``refusal`` allows, and counts an
        item that raised ``BudgetExceeded`` as abandoned (``fn`` wrote nothing for it)."""
        in_flight = 0

        def admitted() -> Iterator[T]:
            nonlocal in_flight
            for item in items:
                if not self.may_start(in_flight):
                    return
                in_flight += 1
                yield item

        async def one(item: T) -> None:
            nonlocal in_flight
            try:
                await fn(item)
                self.finished += 1
            except BudgetExceeded:
                self.abandoned += 1
            finally:
                in_flight -= 1

        await map_bounded(one, admitted(), limit)

    def spent(self) -> dict[str, Any]:
        return {**asdict(self.total), "roles": {r: asdict(s) for r, s in self.roles.items()}}

    def manifest(self) -> dict[str, Any]:
        """Manifest fields: ``stopped`` ("budget" or None), ``spent``, ``budget``; none when
        nothing is capped."""
        if not self.capped:
            return {}
        return {
            "stopped": "budget" if self.stopped else None,
            "spent": self.spent(),
            "budget": self.config.model_dump(exclude_none=True),
        }

    def message(self) -> str:
        """The one line of a stopped run: why, what it spent, how to continue."""
        return self.stop_line(
            f"{self.finished} conversations finished, {self.abandoned} abandoned",
            "Rerun to continue (raise the cap if needed): finished "
            "conversations are skipped and answered requests come from the cache.",
        )

    def stop_line(self, done: str, resume: str) -> str:
        """``stopped on the budget: <why>; <done>; spent <figures>. <resume>``."""
        return (
            f"stopped on the budget: {self.stopped}; {done}; spent "
            f"{_figures(asdict(self.total))}. {resume}"
        )

    def status(self, completed: int, total: int) -> str:
        """``spent 0.0123 -> ~0.0456``: money (tokens when no role has a price), and the
        projected total if the items left cost what this invocation's finished ones did."""
        spent = self.total.usd if self.total.usd is not None else self.total.tokens
        text = f"{spent:.4f}" if self.total.usd is not None else f"{spent:,} tok"
        if not self.finished:
            return f"spent {text}"
        projected = spent + spent / self.finished * max(total - completed, 0)
        shown = f"{projected:.4f}" if self.total.usd is not None else f"{projected:,.0f} tok"
        return f"spent {text} -> ~{shown}"


def _figures(spend: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in spend.items() if v is not None)


class BudgetGuard(BackendWrapper):
    """Refuses a call once a cap is reached; counts the requests and fresh tokens it passes."""

    def __init__(
        self, inner: Backend, budget: Budget, role: str, price: PriceConfig | None
    ) -> None:
        super().__init__(inner)
        self.budget = budget
        self.role = role
        self.price = price

    def _start(self) -> None:
        """Refuse the call at a cap; else count it as a request of the run and the role."""
        self.budget.check()
        for spend in (self.budget.total, self.budget.roles[self.role]):
            spend.requests += 1

    async def generate(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        self._start()
        completions = await self.inner.generate(messages, params)
        for spend in (self.budget.total, self.budget.roles[self.role]):
            spend.add(completions, self.price)
        return completions

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        """One request; its tokens are unknown (a text stream does not report them)."""
        self._start()
        async with aclosing(stream_text(self.inner, messages, params)) as chunks:
            async for chunk in chunks:
                yield chunk
