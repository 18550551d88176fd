"""The ``collabrl`` command line: ``collabrl <command> [--config X.yaml] [key=value ...]``.

Each command is a small function taking the parsed arguments; async work is run with
``asyncio.run`` here, at the boundary, and nowhere else. Config and backend errors end the
command with a one-line message and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from rich.console import Console
from rich.table import Table

from collabrl import __version__
from collabrl.backends.errors import BackendError
from collabrl.backends.stack import Roles
from collabrl.config import Config, ConfigError, load_config
from collabrl.secrets import install_log_redaction
from collabrl.types import GenerationParams, Message

console = Console()

CHECK_PROMPT = "Reply with the single word OK."


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. roles.user.model=gpt-4o-mini")


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


async def _check_role(roles: Roles, name: str) -> tuple[bool, list[str]]:
    """One tiny greedy request to ``name``: (succeeded, table row)."""
    cfg = roles.config.role(name)
    model = getattr(cfg, "model", "-")
    params = GenerationParams(n=1, temperature=0.0, max_tokens=16)
    started = time.monotonic()
    try:
        [completion] = await roles[name].generate([Message(role="user", content=CHECK_PROMPT)], params)
    except BackendError as error:
        return False, [name, cfg.kind, model, "-", "-", "-", f"[red]{error.reason}: {error}"]
    latency = time.monotonic() - started
    reply = completion.text.strip().replace("\n", " ")[:40]
    return True, [name, cfg.kind, model, f"{latency:.2f}s", str(completion.usage.prompt_tokens),
                  str(completion.usage.completion_tokens), f"[green]ok[/green] {reply!r}"]


async def _models_check(config: Config) -> int:
    if not config.roles:
        raise ConfigError("the config defines no roles to check (add a roles: section)")
    async with Roles(config, use_cache=False) as roles:
        results = await asyncio.gather(*(_check_role(roles, name) for name in config.roles))
        table = Table(title="Model check")
        for column in ("role", "kind", "model", "latency", "prompt tok", "completion tok", "result"):
            table.add_column(column)
        for _, row in results:
            table.add_row(*row)
        console.print(table)
        console.print(roles.meter.table())
    return 0 if all(ok for ok, _ in results) else 1


def cmd_models_check(args: argparse.Namespace) -> int:
    """Send one tiny request per role and print latency, tokens and cost."""
    return asyncio.run(_models_check(_load(args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collabrl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"collabrl {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ...")
    commands = parser.add_subparsers(dest="command", metavar="command")

    models = commands.add_parser("models", help="inspect the models bound to roles")
    models_sub = models.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    check = models_sub.add_parser("check", help="one tiny request per role: latency, tokens, cost")
    _add_config_args(check)
    check.set_defaults(func=cmd_models_check)
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
    except (ConfigError, BackendError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
