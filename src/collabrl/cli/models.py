"""``collabrl models check``: one tiny request per role, with latency, tokens and cost."""

from __future__ import annotations

import argparse
import asyncio
import time

from rich.table import Table

from collabrl.backends.errors import BackendError
from collabrl.backends.stack import Roles
from collabrl.cli.common import add_config_args, console, load
from collabrl.config import Config, ConfigError
from collabrl.types import GenerationParams, Message

CHECK_PROMPT = "Reply with the single word OK."


async def _check_role(roles: Roles, name: str) -> tuple[bool, list[str]]:
    """One tiny greedy request to ``name``: (succeeded, table row)."""
    cfg = roles.config.role(name)
    model = getattr(cfg, "model", "-")
    params = GenerationParams(n=1, temperature=0.0, max_tokens=16)
    started = time.monotonic()
    try:
        [completion] = await roles[name].generate(
            [Message(role="user", content=CHECK_PROMPT)], params
        )
    except BackendError as error:
        return False, [name, cfg.kind, model, "-", "-", "-", f"[red]{error.reason}: {error}"]
    latency = time.monotonic() - started
    reply = completion.text.strip().replace("\n", " ")[:40]
    return True, [
        name,
        cfg.kind,
        model,
        f"{latency:.2f}s",
        str(completion.usage.prompt_tokens),
        str(completion.usage.completion_tokens),
        f"[green]ok[/green] {reply!r}",
    ]


async def models_check(config: Config) -> int:
    if not config.roles:
        raise ConfigError("the config defines no roles to check (add a roles: section)")
    async with Roles(config, use_cache=False) as roles:
        results = await asyncio.gather(*(_check_role(roles, name) for name in config.roles))
        table = Table(title="Model check")
        for column in (
            "role",
            "kind",
            "model",
            "latency",
            "prompt tok",
            "completion tok",
            "result",
        ):
            table.add_column(column)
        for _, row in results:
            table.add_row(*row)
        console.print(table)
        console.print(roles.meter.table())
    return 0 if all(ok for ok, _ in results) else 1


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="inspect the models bound to roles")
    sub = models.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    check = sub.add_parser("check", help="one tiny request per role: latency, tokens, cost")
    add_config_args(check)
    check.set_defaults(func=lambda args: asyncio.run(models_check(load(args))))
