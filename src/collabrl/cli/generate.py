"""``collabrl generate`` (the data engine) and ``collabrl export`` (DPO pairs, SFT rows)."""

from __future__ import annotations

import argparse
import asyncio
import json

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
from collabrl.components import build_assistant, build_reward, build_simulator
from collabrl.config import Config, ConfigError
from collabrl.engine import DataEngine, EngineStopped
from collabrl.export import export
from collabrl.prompts import load_prompt
from collabrl.rollout import Policy
from collabrl.sandbox import check_task_set, sandbox_for, sandbox_record
from collabrl.tasks.base import load_tasks
from collabrl.types import Task


def generation_tasks(config: Config) -> list[Task]:
    return load_tasks(config.generate.tasks, "generate.tasks")


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
        console.print(f"[yellow]{report.message()}[/yellow]\nthose tasks are left out", highlight=False)
    kept = report.keep(tasks)
    if not kept:
        raise ConfigError("no task passed the sandbox gate; nothing to generate")
    return kept


async def generate(config: Config, meter: UsageMeter | None = None, *,
                   keep_failed: bool = False) -> int:
    check_output_dir(config.generate.output_dir, "generate.output_dir")
    check_cache(config)
    tasks = await gated(config, generation_tasks(config))
    budget = Budget(config.budget)
    async with Roles(config, meter=meter, budget=budget) as roles:
        policy = build_assistant(config, roles)
        proactive = Policy(policy.backend, policy.params, system_prompt=load_prompt("proactive"))
        sandbox = await sandbox_record(config, config.reward.metrics, tasks)
        engine = DataEngine(config.generate, user=build_simulator(config, roles), policy=policy,
                            proactive=proactive, reward=build_reward(config, roles),
                            run_info={"sandbox": sandbox} if sandbox else None, budget=budget)
        stopped = None

        def engine_status(completed: int, total: int) -> str:
            return f"failed {engine.outcomes['failed']}  {budget.status(completed, total)}"

        with progress_bar() as progress:
            bar = progress.add_task("generate", total=len(tasks), status="")
            try:
                await engine.run(tasks, config.generate.output_dir, retry_failed=not keep_failed,
                                 on_done=lambda _: advance(progress, bar, engine_status))
            except EngineStopped as error:
                stopped = error
        console.print(f"outcomes: {dict(engine.outcomes)}; failure reasons: "
                      f"{dict(engine.failure_reasons) or 'none'}; cut by the length limit: "
                      f"{dict(engine.cut) or 'none'}")
        console.print(f"records in {config.generate.output_dir}")
        console.print(roles.meter.table())
    ran = engine.outcomes["ok"] + engine.outcomes["failed"]
    return run_exit_status(ran, engine.failures, budget, stopped)


def run_export(config: Config) -> int:
    check_input_dir(config.export.input_dir, "export.input_dir")
    check_output_dir(config.export.output_dir, "export.output_dir")
    try:
        report = export(config.export)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    console.print(json.dumps(report, indent=2))
    console.print(f"written to {config.export.output_dir}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    gen = commands.add_parser("generate", help="the data engine: scored multi-turn conversations")
    add_config_args(gen)
    add_keep_failed(gen)
    gen.set_defaults(func=lambda args: asyncio.run(generate(load(args), keep_failed=args.keep_failed)))
    exp = commands.add_parser("export", help="DPO pairs and SFT rows from generate's output")
    add_config_args(exp)
    exp.set_defaults(func=lambda args: run_export(load(args)))
