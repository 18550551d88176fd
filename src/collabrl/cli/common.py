"""Pieces every CLI command shares: the console, config arguments, and running async work."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from collabrl.config import Config, load_config

# Outside a terminal (logs, CI) rich would assume 80 columns and squeeze the tables.
console = Console(width=None if sys.stdout.isatty() else 140)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. roles.user.model=gpt-4o-mini")


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def progress_bar() -> Progress:
    """Conversations done / total, elapsed time, and a free ``status`` field (cost, failures)."""
    return Progress(TextColumn("conversations"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
