"""``collabrl eval``: systems under test chat with the user simulator; statistics and Table 1."""

from __future__ import annotations

import argparse
import asyncio

from rich.markdown import Markdown

from collabrl.backends.accounting import UsageMeter
from collabrl.backends.stack import Roles
from collabrl.cli.common import add_config_args, console, load, progress_bar
from collabrl.components import build_simulator, metric_backend, metric_builder
from collabrl.config import Config
from collabrl.evaluate import Evaluation, system_policy, table_markdown, write_summary
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.tasks.base import load_tasks


def build_evaluation(config: Config, roles: Roles) -> Evaluation:
    build = metric_builder(roles)
    metrics = [build(spec, "eval.task_metrics") for spec in config.eval.task_metrics]
    policies = {s.name: system_policy(s, roles.__getitem__, lambda r: config.role(r).generation)
                for s in config.eval.systems}
    return Evaluation(config.eval, policies=policies, user=build_simulator(config, roles),
                      task_metrics=metrics, judge=InteractivityJudge(metric_backend(roles, config.eval.judge_role)))


async def evaluate(config: Config, meter: UsageMeter | None = None) -> int:
    tasks = load_tasks(config.eval.tasks, "eval.tasks")
    systems = [s.name for s in config.eval.systems]
    total = len(tasks) * len(systems) * config.eval.seeds
    async with Roles(config, meter=meter) as roles:
        evaluation = build_evaluation(config, roles)
        with progress_bar() as progress:
            bar = progress.add_task("eval", total=total, status="")
            await evaluation.run(tasks, on_done=lambda record: progress.advance(bar))
        summary = write_summary(config.eval, systems)
        console.print(Markdown(table_markdown(summary, systems)))
        console.print(roles.meter.table())
    console.print(f"records, summary.json and table.md in {config.eval.output_dir}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("eval", help="evaluate systems against the user simulator")
    add_config_args(cmd)
    cmd.set_defaults(func=lambda args: asyncio.run(evaluate(load(args))))
