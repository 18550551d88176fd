"""Stage progress on a terminal (a rich bar) and elsewhere (a plain line every few seconds), driven
by a fake clock: no sleeps, the same output every run."""

from __future__ import annotations

import io
import re
import threading

from rich.console import Console

from collabrl.progress import StageProgress, duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_duration_is_short_and_readable():
    assert [duration(s) for s in (0, 45.4, 72, 150, 3600 + 125)] == [
        "0s",
        "45s",
        "1m12s",
        "2m30s",
        "1h02m",
    ]


def test_off_a_terminal_one_line_every_few_seconds_with_time_left():
    console, out = plain_console()
    clock = FakeClock()
    with StageProgress(
        console, "generate", "conversations", 120, clock=clock, every=5, heartbeat=None
    ) as p:
        for _ in range(39):  # 39 items in 4.9 s: no line yet
            clock.now += 0.1257
            p.advance()
        assert out.getvalue() == ""
        clock.now = 1000.0 + 72  # the 40th item after 1m12s: 80 left at 1.8 s each
        p.advance(status="failed 0")
        clock.now += 1  # within the interval: nothing
        p.advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "generate: 40/120 conversations, 1m12s elapsed, ~2m24s left, failed 0"
    assert lines[1].startswith("generate: 41/120 conversations, 1m13s elapsed, ~")  # at the end
    assert len(lines) == 2


def test_off_a_terminal_the_last_line_says_done_and_a_failed_stage_stays_silent():
    console, out = plain_console()
    clock = FakeClock()
    with StageProgress(console, "report", "run folders", 2, clock=clock, heartbeat=None) as p:
        clock.now += 3
        p.update(2)
    assert out.getvalue().splitlines() == ["report: 2/2 run folders, 3s elapsed, done"]
    console, out = plain_console()
    try:
        with StageProgress(console, "report", "run folders", 2, clock=clock, heartbeat=None):
            raise KeyError("boom")
    except KeyError:
        pass
    assert out.getvalue() == ""


class SignallingIO(io.StringIO):
    """A console file that says when something was written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


def test_off_a_terminal_the_heartbeat_prints_while_no_item_finishes():
    out = SignallingIO()
    console = Console(file=out, force_terminal=False, width=200)
    clock = FakeClock()
    with StageProgress(console, "generate", "conversations", 96, clock=clock, heartbeat=0.01):
        clock.now += 6  # the first conversation is still running after 6 s
        assert out.written.wait(timeout=30)
        assert out.getvalue().splitlines()[0] == "generate: 0/96 conversations, 6s elapsed"


def test_a_resumed_stage_paces_only_the_items_of_this_run():
    console, _ = plain_console()
    clock = FakeClock()
    p = StageProgress(console, "train", "steps", 100, completed=50, clock=clock, heartbeat=None)
    assert p.left() is None  # nothing done in this run yet: no guess
    clock.now += 10
    p.update(60)
    assert p.left() == 40.0  # 10 steps in 10 s, 40 to go


def test_on_a_terminal_a_bar_with_counts_elapsed_and_time_left():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150, color_system=None)
    clock = FakeClock()
    with StageProgress(console, "eval", "conversations", 120, clock=clock) as p:
        for _ in range(30):
            clock.now += 2
            p.advance(status="spent 12 tok")
    screens = re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()))
    final = [line for line in screens if line.strip()][-1]  # the bar as it was left
    assert "eval" in final and "30/120 conversations" in final and "spent 12 tok" in final
    assert "0:01:00" in final  # elapsed: 30 items, 2 s each
    assert "left 0:03:00" in final  # 90 to go at 2 s each
