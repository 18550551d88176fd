"""Pieces every CLI command shares: the console, config arguments, error lines, progress bars,
and the exit status of a run over many items."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.text import Text

from collabrl.budget import EXIT_BUDGET, Budget
from collabrl.config import Config, load_config
from collabrl.failures import FailureTally, all_failed_message
from collabrl.progress import StageProgress, console


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides, e.g. roles.user.model=gpt-4o-mini",
    )


def add_keep_failed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-failed",
        action="store_true",
        help="on a rerun, keep items that failed instead of retrying them",
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def print_error(message: object) -> None:
    """``error: ...`` on exactly one line: a multi-line message is joined with "; ", and the
    line is never wrapped, so scripts and people find the whole reason on the last line. The
    message is plain text: brackets and ``:name:`` in it are not read as markup or emoji."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    console.print(Text.assemble(("error:", "red"), " ", "; ".join(lines)), soft_wrap=True)


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def progress_bar(
    stage: str, total: int, *, completed: int = 0, unit: str = "conversations"
) -> StageProgress:
    """Items done / total with elapsed and remaining time: a bar on a terminal, a plain line
    every few seconds elsewhere (``collabrl.progress``)."""
    return StageProgress(console, stage, unit, total, completed=completed)


def advance(progress: StageProgress, status: Callable[[int, int], str]) -> None:
    """One more item done; the status note from (completed, total)."""
    done = progress.completed + 1
    progress.update(done, status=status(done, progress.total or 0))


def run_exit_status(
    ran: int, failures: FailureTally, budget: Budget, stopped: object = None
) -> int:
    """A run's exit status, its reason printed as one error line: 1 when it stopped early
    (``stopped``: why) or every one of the ``ran`` items failed, 3 when the budget stopped it,
    else 0."""
    if stopped is None and ran and len(failures) == ran:
        stopped = all_failed_message("conversations", ran, failures)
    if stopped is not None:
        print_error(stopped)
        return 1
    if budget.stopped:
        print_error(budget.message())
        return EXIT_BUDGET
    return 0
