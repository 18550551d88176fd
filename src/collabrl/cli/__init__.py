"""The ``collabrl`` command line: ``collabrl <command> [--config X.yaml] [key=value ...]``.

Each command lives in its own module here and registers its parser; async work is run with
``asyncio.run`` at this boundary and nowhere else. Config, path, task-file, cache and backend
errors end the command with one line, ``error: ...`` naming the key or file, and exit status 2
instead of a traceback; commands check their paths before they start (``cli/paths.py``).
Exit statuses: 0 done, 1 the run failed (a failure rate over its threshold, every item failed),
2 bad input (config, paths, tasks, cache, backend setup), 3 stopped by the budget
(``collabrl.budget``: rerun to continue).
"""

from __future__ import annotations

import argparse
import logging

from collabrl import __version__
from collabrl.backends.cache import CacheError
from collabrl.backends.errors import BackendError
from collabrl.cli import (
    config,
    demo,
    evaluate,
    generate,
    models,
    report,
    simulate,
    study,
    tasks,
    train,
)
from collabrl.cli.common import print_error
from collabrl.cli.paths import PathError
from collabrl.config import ConfigError
from collabrl.secrets import install_log_redaction
from collabrl.tasks.base import TaskFileError

COMMANDS = (models, tasks, simulate, generate, evaluate, train, report, study, demo, config)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collabrl", description="Train LLMs to collaborate: simulate, reward, train, evaluate."
    )
    parser.add_argument("--version", action="version", version=f"collabrl {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=LOG_LEVELS,
        help=", ".join(LOG_LEVELS),
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    install_log_redaction()
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ConfigError, PathError, TaskFileError, CacheError, BackendError) as error:
        print_error(error)
        return 2
