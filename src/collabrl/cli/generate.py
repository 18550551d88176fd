"""``collabrl generate`` (the data engine) and ``collabrl export`` (DPO pairs, SFT rows)."""

from __future__ import annotations

import argparse
import asyncio

from collabrl.assembly import build_assistant, build_personas, build_reward, build_simulator
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
from collabrl.cli.paths import check_cache, check_input_dir, check_output_dir
from collabrl.config import Config, ConfigError
from collabrl.console_log import log_file, uses_local_models
from collabrl.engine import (
    CONVERSATIONS_FILE,
    DataEngine,
    EngineStopped,
    finished_conversations,
)
from collabrl.export import export
from collabrl.prompts import load_prompt
from collabrl.rollout import Assistant
from collabrl.sandbox import check_task_set, sandbox_for, sandbox_record
from collabrl.tasks.registry import generation_tasks
from collabrl.tracking import open_tracker, require_trackers
from collabrl.tracking_figures import GenerateFigures, records_in
from collabrl.types import Task


async def gated(config: Config, tasks: list[Task]) -> list[Task]:
    """When the reward runs code, first check every code task in the sandbox: its reference
    solution must pass and an empty solution must fail. Tasks that violate it are dropped (and
    listed): scoring them would hand out wrong rewards. Where the sandbox's isolation is weak
    and ``sandbox.allow_weak_isolation`` is off, nothing runs: ``SandboxRefused`` (a
    ConfigError) stops the command."""
    code = [t for t in tasks if t.artifact == "code"]
    spec = next((m for m in config.reward.metrics if m.name == "pass_rate"), None)
    if not code or spec is None:
        return tasks
    report = await check_task_set(code, sandbox_for(spec.options, config.sandbox))
    if not report.ok:
        console.print(
            f"[yellow]{report.message()}[/yellow]\nthose tasks are left out", highlight=False
        )
    kept = report.keep(tasks)
    if not kept:
        raise ConfigError("no task passed the sandbox gate; nothing to generate")
    return kept


async def generate(
    config: Config, meter: UsageMeter | None = None, *, keep_failed: bool = False
) -> int:
    check_output_dir(config.generate.output_dir, "generate.output_dir")
    check_cache(config)
    require_trackers(config.tracking)
    tasks = await gated(config, generation_tasks(config))
    budget = Budget(config.budget)
    async with (
        Roles(config, meter=meter, budget=budget) as roles,
        open_tracker(
            config.tracking, config.generate.output_dir, config.model_dump(mode="json"), "generate"
        ) as tracker,
    ):
        policy = build_assistant(config, roles)
        proactive = Assistant(policy.backend, policy.params, system_prompt=load_prompt("proactive"))
        sandbox = await sandbox_record(config, config.reward.metrics, tasks)
        engine = DataEngine(
            config.generate,
            user=build_simulator(config, roles),
            policy=policy,
            proactive=proactive,
            reward=build_reward(config, roles),
            run_info={"sandbox": sandbox} if sandbox else None,
            budget=budget,
            personas=build_personas(config),
        )
        stopped = None

        def engine_status(completed: int, total: int) -> str:
            return f"failed {engine.outcomes['failed']}  {budget.status(completed, total)}"

        figures = GenerateFigures(records_in(config.generate.output_dir / CONVERSATIONS_FILE))

        def on_done(record) -> None:
            figures.add_conversation(record)
            tracker.scalars(figures.figures(engine.cut["futures"], roles.meter), figures.step)
            advance(progress, engine_status)

        finished = finished_conversations(config.generate.output_dir, retry_failed=not keep_failed)
        already = sum(task.id in finished for task in tasks)
        with progress_bar("generate", len(tasks), completed=already) as progress:
            try:
                await engine.run(
                    tasks,
                    config.generate.output_dir,
                    retry_failed=not keep_failed,
                    on_done=on_done,
                    on_turn=figures.add_turn,
                )
            except EngineStopped as error:
                stopped = error
        ran = engine.outcomes["ok"] + engine.outcomes["failed"]
        console.print(
            f"{ran} conversations built ({already} already done); "
            f"outcomes: {dict(engine.outcomes) or 'none'}; failure reasons: "
            f"{dict(engine.failure_reasons) or 'none'}; cut by the length limit: "
            f"{dict(engine.cut) or 'none'}"
        )
        console.print(f"records in {config.generate.output_dir}")
        console.print(roles.meter.table())
    return run_exit_status(ran, engine.failures, budget, stopped)


def run_export(config: Config) -> int:
    check_input_dir(config.export.input_dir, "export.input_dir")
    check_output_dir(config.export.output_dir, "export.output_dir")
    try:
        report = export(config.export)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    rows = ", ".join(f"{name} {count}" for name, count in report["rows"].items())
    console.print(
        f"export: {rows} rows; DPO turns {_counts(report['dpo'])}; SFT conversations "
        f"{_counts(report['sft'])}",
        highlight=False,
    )
    console.print(f"written to {config.export.output_dir} (counts also in its manifest.json)")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    """``collabrl generate``, library output in ``<generate.output_dir>/collabrl.log``."""
    config = load(args)
    with log_file(config.generate.output_dir, "generate", local_models=uses_local_models(config)):
        return asyncio.run(generate(config, keep_failed=args.keep_failed))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.items()) or "none"


def export_command(args: argparse.Namespace) -> int:
    """``collabrl export``, library output in ``<export.output_dir>/collabrl.log``."""
    config = load(args)
    with log_file(config.export.output_dir, "export"):
        return run_export(config)


def register(commands: argparse._SubParsersAction) -> None:
    gen = commands.add_parser("generate", help="the data engine: scored multi-turn conversations")
    add_config_args(gen)
    add_keep_failed(gen)
    gen.set_defaults(func=run_generate)
    exp = commands.add_parser("export", help="DPO pairs and SFT rows from generate's output")
    add_config_args(exp)
    exp.set_defaults(func=export_command)
