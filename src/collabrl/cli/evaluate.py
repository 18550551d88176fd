"""``collabrl eval``: systems under test chat with the user simulator; statistics and Table 1."""

from __future__ import annotations

import argparse
import asyncio

from rich.markdown import Markdown

from collabrl.assembly import build_personas, build_simulator, metric_backend, metric_builder
from collabrl.backends.accounting import UsageMeter
from collabrl.backends.stack import Roles
from collabrl.budget import Budget
from collabrl.cli.common import (
    add_config_args,
    add_keep_failed,
    advance,
    console,
    load,
    progress_bar,
    run_exit_status,
)
from collabrl.cli.paths import check_cache, check_output_dir
from collabrl.config import Config, ConfigError
from collabrl.console_log import log_file, uses_local_models
from collabrl.evaluate import (
    RECORDS_FILE,
    Evaluation,
    system_assistant,
    table_markdown,
    write_summary,
)
from collabrl.metrics.interactivity import InteractivityJudge
from collabrl.sandbox import sandbox_record
from collabrl.tasks.registry import load_tasks
from collabrl.tracking import open_tracker, require_trackers
from collabrl.tracking_figures import EvalFigures, records_in, summary_figures, usage_figures


def build_evaluation(config: Config, roles: Roles, budget: Budget | None = None) -> Evaluation:
    build = metric_builder(roles)
    metrics = [build(spec, "eval.task_metrics") for spec in config.eval.task_metrics]
    assistants = {
        s.name: system_assistant(s, roles.__getitem__, lambda r: config.role(r).generation)
        for s in config.eval.systems
    }
    return Evaluation(
        config.eval,
        assistants=assistants,
        user=build_simulator(config, roles),
        task_metrics=metrics,
        budget=budget,
        personas=build_personas(config),
        judge=None
        if config.eval.judge_role is None
        else InteractivityJudge(metric_backend(roles, config.eval.judge_role)),
    )


async def evaluate(
    config: Config, meter: UsageMeter | None = None, *, keep_failed: bool = False
) -> int:
    check_output_dir(config.eval.output_dir, "eval.output_dir")
    check_cache(config)
    require_trackers(config.tracking)
    tasks = load_tasks(config.eval.tasks, "eval.tasks")
    sandbox = await sandbox_record(config, config.eval.task_metrics, tasks)
    if sandbox and sandbox["refused"]:
        raise ConfigError(sandbox["refused"])  # before any conversation runs
    systems = [s.name for s in config.eval.systems]
    total = len(tasks) * len(systems) * config.eval.seeds
    budget = Budget(config.budget)
    async with (
        Roles(config, meter=meter, budget=budget) as roles,
        open_tracker(
            config.tracking, config.eval.output_dir, config.model_dump(mode="json"), "eval"
        ) as tracker,
    ):
        evaluation = build_evaluation(config, roles, budget)
        already = total - len(evaluation.pending(tasks, retry_failed=not keep_failed))
        figures = EvalFigures(records_in(config.eval.output_dir / RECORDS_FILE))

        def on_done(record) -> None:
            tracker.scalars(figures.add(record) | usage_figures("eval", roles.meter), figures.step)
            advance(progress, budget.status)

        with progress_bar("eval", total, completed=already) as progress:
            await evaluation.run(tasks, on_done=on_done, retry_failed=not keep_failed)
        summary = write_summary(
            config.eval, systems, **({"sandbox": sandbox} if sandbox else {}), **budget.manifest()
        )
        tracker.scalars(summary_figures(summary), figures.step)
        tracker.text("eval/table", table_markdown(summary, systems))
        console.print(Markdown(table_markdown(summary, systems)))
        console.print(roles.meter.table())
    console.print(
        f"{evaluation.evaluated} conversations evaluated ({already} already done); "
        f"records, summary.json and table.md in {config.eval.output_dir}"
    )
    return run_exit_status(evaluation.evaluated, evaluation.failures, budget)


def run_evaluate(args: argparse.Namespace) -> int:
    """``collabrl eval``, library output in ``<eval.output_dir>/collabrl.log``."""
    config = load(args)
    with log_file(config.eval.output_dir, "eval", local_models=uses_local_models(config)):
        return asyncio.run(evaluate(config, keep_failed=args.keep_failed))


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("eval", help="evaluate systems against the user simulator")
    add_config_args(cmd)
    add_keep_failed(cmd)
    cmd.set_defaults(func=run_evaluate)
