"""``collabrl config reference``: every config key as Markdown tables, printed or written to a file.

README.md's config reference is this output between two markers; after changing a field in
``collabrl/config.py``, ``collabrl config reference --write README.md`` brings it up to date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape

from collabrl.cli.common import console, print_error
from collabrl.config_reference import END, START, render, replace_section


def reference(args: argparse.Namespace) -> int:
    text = render()
    if args.write is None:
        sys.stdout.write(text)
        return 0
    path = Path(args.write)
    try:
        path.write_text(replace_section(path.read_text(), text))
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        print_error(f"--write {path}: {reason}")
        return 2
    console.print(f"wrote the config reference into {escape(str(path))}", highlight=False)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="document the config files")
    sub = config.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    ref = sub.add_parser("reference", help="every config key, its type, default and meaning")
    ref.add_argument(
        "--write", metavar="FILE", help=f"replace the text between {START} and {END} in FILE"
    )
    ref.set_defaults(func=reference)
