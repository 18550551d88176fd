"""Progress of one stage (generate, export, train, eval, report): items done out of a total, the
time spent and the time left.

On a terminal it is a rich bar that redraws itself. Anywhere else (CI logs, ``| tee``, a file) a
bar would print nothing until the end, so it prints one plain line every ``every`` seconds, e.g.
``generate: 40/120 conversations, 1m12s elapsed, ~2m30s left``, and a last line when the stage
ends. A heartbeat thread prints the line also while no item finishes (a first conversation of a
small local model can take minutes). The clock is injectable and the heartbeat can be left off,
so that both modes are tested without waiting.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# The console every command prints to. Outside a terminal (logs, CI) rich would assume 80
# columns and squeeze the tables.
console = Console(width=None if sys.stdout.isatty() else 140)
Clock = Callable[[], float]
PLAIN_EVERY_S = 5.0
HEARTBEAT_S = 1.0


def duration(seconds: float) -> str:
    """``45s``, ``1m12s``, ``2h03m``: short enough for a progress line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class StageProgress:
    """``with StageProgress(console, "eval", "conversations", total) as p: p.advance()``."""

    def __init__(
        self,
        console: Console,
        stage: str,
        unit: str,
        total: int | None,
        *,
        completed: int = 0,
        clock: Clock = time.monotonic,
        every: float = PLAIN_EVERY_S,
        heartbeat: float | None = HEARTBEAT_S,
    ) -> None:
        self.console, self.stage, self.unit = console, stage, unit
        self.total, self.completed, self.status = total, completed, ""
        self.clock, self.every = clock, every
        self.started = self.last_line = clock()
        self.first = completed  # items done before this run (a resume): not part of the pace
        self.bar: Progress | None = None
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.heartbeat = heartbeat
        if console.is_terminal:
            self.bar = Progress(
                TextColumn(f"[bold]{stage}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit, markup=False),
                TextColumn("{task.fields[status]}", markup=False),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=console,
                get_time=clock,
                transient=False,
            )
            self.task = self.bar.add_task(stage, total=total, completed=completed, status="")

    def __enter__(self) -> StageProgress:
        if self.bar is not None:
            self.bar.start()
        elif self.heartbeat is not None:
            threading.Thread(target=self._beat, name=f"{self.stage}-progress", daemon=True).start()
        return self

    def _beat(self) -> None:
        while not self.stopped.wait(self.heartbeat):
            self.tick()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stopped.set()
        if self.bar is not None:
            self.bar.stop()
        elif kind is None:
            with self.lock:
                self.console.print(self.line(), highlight=False, soft_wrap=True)

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        self.update(self.completed + steps, status=status)

    def update(
        self, completed: int, *, total: int | None = None, status: str | None = None
    ) -> None:
        """``completed`` items done (of ``total``, when it changes); ``status``: a short note."""
        self.completed = completed
        self.total = self.total if total is None else total
        self.status = self.status if status is None else status
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, total=self.total, status=self.status)
        else:
            self.tick()

    def tick(self) -> None:
        """Off a terminal: the plain line, when ``every`` seconds passed since the last one and
        the stage is not finished (its last line comes at the end)."""
        with self.lock:
            now = self.clock()
            finished = self.total is not None and self.completed >= self.total
            if now - self.last_line >= self.every and not finished and not self.stopped.is_set():
                self.last_line = now
                self.console.print(self.line(), highlight=False, soft_wrap=True)

    def left(self) -> float | None:
        """Seconds left at the pace of this run so far; None before the first item."""
        done = self.completed - self.first
        if self.total is None or done <= 0:
            return None
        return (self.clock() - self.started) / done * max(0, self.total - self.completed)

    def line(self) -> str:
        """The plain line: counts, elapsed, time left (or "done"), status."""
        of = f"/{self.total}" if self.total is not None else ""
        parts = [
            f"{self.stage}: {self.completed}{of} {self.unit}",
            f"{duration(self.clock() - self.started)} elapsed",
        ]
        left = self.left()
        if self.total is not None and self.completed >= self.total:
            parts.append("done")
        elif left is not None:
            parts.append(f"~{duration(left)} left")
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)
