"""``collabrl simulate`` (whole conversations for a task file) and ``collabrl reward`` (MR of
candidate replies to one conversation prefix). With ``user.personas`` set, both meet the persona
of (task id, seed 0), and each simulate record names it."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ValidationError
from rich.table import Table

from collabrl.assembly import build_assistant, build_personas, build_reward, build_simulator
from collabrl.backends.stack import Roles
from collabrl.budget import Budget
from collabrl.cli.common import (
    add_config_args,
    add_keep_failed,
    advance,
    console,
    load,
    positive_int,
    progress_bar,
    run_exit_status,
)
from collabrl.cli.paths import check_cache, check_output_file
from collabrl.config import Config, ConfigError
from collabrl.failures import FailureTally
from collabrl.personas import cast, persona_of
from collabrl.records import JsonlAppender, file_manifest, latest_by, read_jsonl, write_manifest
from collabrl.reward import CandidateReward
from collabrl.rollout import FAILED_ENDS, run_conversation
from collabrl.tasks.registry import load_tasks
from collabrl.types import Conversation, Message, Task

CONVERSATIONS_IN_FLIGHT = 64


async def simulate(config: Config, *, keep_failed: bool = False) -> int:
    check_output_file(config.simulate.output, "simulate.output")
    check_cache(config)
    tasks = load_tasks(config.simulate.tasks, "simulate.tasks")
    personas = build_personas(config)
    output = config.simulate.output
    latest = latest_by(read_jsonl(output), "task_id") if output.exists() else {}
    finished = {
        tid for tid, row in latest.items() if row["ended"] not in FAILED_ENDS or keep_failed
    }
    todo = [t for t in tasks if t.id not in finished]
    ended: Counter[str] = Counter()
    failures = FailureTally()
    budget = Budget(config.budget)
    async with Roles(config, budget=budget) as roles:
        user, assistant = build_simulator(config, roles), build_assistant(config, roles)
        with (
            JsonlAppender(output) as out,
            progress_bar("simulate", len(tasks), completed=len(finished)) as progress,
        ):

            async def one(task: Task) -> None:
                task = cast(task, personas, 0)
                run = await run_conversation(task, assistant, user, config.simulate.max_turns)
                out.append(
                    {"task_id": task.id, "persona": persona_of(task), **run.model_dump(mode="json")}
                )
                ended[run.ended] += 1
                if run.failed:
                    failures.add(run.error or run.ended, run.error_detail)
                advance(progress, budget.status)

            await budget.map_bounded(one, todo, CONVERSATIONS_IN_FLIGHT)
        write_manifest(
            output.parent,
            [file_manifest(output)],
            command="simulate",
            ended=dict(ended),
            failures=failures.to_dict(),
            **budget.manifest(),
        )
        console.print(
            f"{sum(ended.values())} conversations simulated ({len(finished)} already done): "
            + ", ".join(f"{k}={v}" for k, v in sorted(ended.items()))
        )
        console.print(f"written to {output}")
        console.print(roles.meter.table())
    return run_exit_status(sum(ended.values()), failures, budget)


class RewardRequest(BaseModel):
    """A ``--conversation`` file: the task, the prefix (ending with a user turn), candidates."""

    task: Task
    conversation: list[Message]
    candidates: list[str] = []


def read_reward_request(path: Path) -> RewardRequest:
    try:
        return RewardRequest.model_validate(json.loads(path.read_text()))
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except (json.JSONDecodeError, ValidationError) as e:
        raise ConfigError(f"{path} is not a valid reward request: {e}") from None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def reward_table(results: list[CandidateReward]) -> Table:
    names = list(results[0].metric_means) if results else []
    table = Table(title="Multiturn-aware reward per candidate")
    table.add_column("#", justify="right")
    table.add_column("reply", max_width=40, no_wrap=True, overflow="ellipsis")
    for column in ("MR", "± s.e.", *names, "unscored"):
        table.add_column(column, justify="right", no_wrap=True)
    for i, r in enumerate(results):
        table.add_row(
            str(i),
            r.reply.replace("\n", " "),
            _fmt(r.mr),
            _fmt(r.stderr),
            *(_fmt(r.metric_means[n]) for n in names),
            f"{r.unscored}/{len(r.samples)}",
        )
    return table


async def score_candidates(
    config: Config, request: RewardRequest, k: int | None, output: Path | None
) -> int:
    """MR of the request's candidates, or of ``k`` replies sampled when it has none (``k`` None:
    the config's ``generate.candidates``)."""
    if output is not None:
        check_output_file(output, "--output")
    check_cache(config)
    prefix = Conversation(messages=tuple(request.conversation))
    async with Roles(config) as roles:
        candidates = request.candidates
        if not candidates:
            n = config.generate.candidates if k is None else k
            replies = await build_assistant(config, roles).reply(prefix, n=n)
            candidates = [c.text for c in replies]
        try:
            task = cast(request.task, build_personas(config), 0)
            results = await build_reward(config, roles).score(task, prefix, candidates)
        except ValueError as error:  # e.g. the prefix does not end with a user turn
            raise ConfigError(str(error)) from None
        console.print(reward_table(results))
        console.print(roles.meter.table())
    if output is not None:
        output.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=1))
        console.print(f"details (futures, scores, judge texts) written to {output}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser(
        "simulate", help="conversations between the assistant and the user simulator"
    )
    add_config_args(sim)
    add_keep_failed(sim)
    sim.set_defaults(
        func=lambda args: asyncio.run(simulate(load(args), keep_failed=args.keep_failed))
    )

    rew = commands.add_parser("reward", help="multiturn-aware reward of candidate replies")
    add_config_args(rew)
    rew.add_argument(
        "--conversation",
        required=True,
        type=Path,
        help="JSON file: {task, conversation (ends with a user turn), candidates?}",
    )
    rew.add_argument(
        "--candidates",
        type=positive_int,
        help="k: replies to sample from the assistant when the file has none "
        "(default: the config's generate.candidates)",
    )
    rew.add_argument("--output", type=Path, help="write every candidate's futures and scores here")
    rew.set_defaults(
        func=lambda args: asyncio.run(
            score_candidates(
                load(args), read_reward_request(args.conversation), args.candidates, args.output
            )
        )
    )
