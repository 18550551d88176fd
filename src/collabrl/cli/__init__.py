"""The ``collabrl`` command line: ``collabrl <command> [--config X.yaml] [key=value ...]``.

Each command lives in its own module here and registers its parser; async work is run with
``asyncio.run`` at this boundary and nowhere else. Config, task-file and backend errors end the
command with a message and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging

from collabrl import __version__
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
from collabrl.cli.common import console
from collabrl.config import ConfigError
from collabrl.secrets import install_log_redaction
from collabrl.tasks.base import TaskFileError

COMMANDS = (models, tasks, simulate, generate, evaluate, train, report, study, demo, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collabrl", description="Train LLMs to collaborate: simulate, reward, train, evaluate."
    )
    parser.add_argument("--version", action="version", version=f"collabrl {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ...")
    commands = parser.add_subparsers(dest="command", metavar="command")
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    install_log_redaction()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ConfigError, TaskFileError, BackendError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return 2
