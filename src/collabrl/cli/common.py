"""Pieces every CLI command shares: the console, config arguments, and running async work."""

from __future__ import annotations

import argparse

from rich.console import Console

from collabrl.config import Config, load_config

console = Console()


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. roles.user.model=gpt-4o-mini")


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)
