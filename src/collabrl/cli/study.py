"""``collabrl study``: run a user study with people instead of the user simulator.

``invite`` creates participant links (stored hashed; printed once), ``serve`` runs the web app
(participants co-write a document with blind, counterbalanced systems; admin page with exports),
``analyze`` turns the study database into means with intervals, paired comparisons, time on task,
plots and a Markdown summary. The web and database libraries (the ``study`` extra) are imported
only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from pathlib import Path

from collabrl.cli.common import console, positive_int, print_error
from collabrl.cli.paths import check_output_dir, check_output_file
from collabrl.study.assignment import assign
from collabrl.study.config import StudyConfig, load_study_config
from collabrl.tasks.registry import load_tasks


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, help="study YAML config")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides, e.g. database=sqlite:///study.sqlite",
    )


def _load(args: argparse.Namespace) -> StudyConfig:
    return load_study_config(args.config, args.overrides)


async def invite(config: StudyConfig, count: int | None) -> list[str]:
    """Create ``count`` participants (default: up to ``participants``); returns their links."""
    from collabrl.study.db import open_database  # the `study` extra: imported only when used
    from collabrl.study.store import Store

    task_ids = [t.id for t in load_tasks(config.tasks, "tasks")]
    plan = functools.partial(
        assign,
        systems=[s.name for s in config.systems],
        per_participant=config.systems_per_participant,
        task_ids=task_ids,
    )
    store = Store(open_database(config.database))
    try:
        if count is None:
            count = max(0, config.participants - await store.count_participants())
        tokens = await store.create_participants(count, plan)
    finally:
        store.close()
    return [f"{config.public_url.rstrip('/')}/p/{token}" for token in tokens]


def run_invite(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.out is not None:  # before the database holds participants whose links would be lost
        check_output_file(args.out, "--out")
    links = asyncio.run(invite(config, args.n))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            out.writelines(link + "\n" for link in links)
    for link in links:
        print(link)  # stdout holds only the links, for `> links.txt`; the summary goes to stderr
    where = f"; also appended to {args.out}" if args.out else ""
    print(f"{len(links)} new participant link(s) in {config.database}{where}", file=sys.stderr)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from collabrl.study.app import create_app

    config = _load(args)
    admin_token = os.environ.get(config.admin_token_env) or None
    app = create_app(config, admin_token=admin_token)
    admin = "" if admin_token else f" (disabled: set {config.admin_token_env})"
    console.print(
        f"study '{config.title}' on http://{args.host}:{args.port}; database "
        f"{config.database}; admin page /admin{admin}",
        highlight=False,
    )
    # No access log: participant links (with their tokens) would end up in it.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False)
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "--out")
    from sqlalchemy.exc import SQLAlchemyError

    from collabrl.study.analyze import analyze, summary_markdown

    try:
        summary = analyze(args.db_url, args.out, args.resamples)
    except FileNotFoundError as error:
        print_error(error)
        return 2
    except SQLAlchemyError as error:  # not a database, or not a study's
        print_error(
            f"{args.db_url}: cannot read the study database: {getattr(error, 'orig', error)}"
        )
        return 2
    console.print(summary_markdown(summary), highlight=False, markup=False)
    console.print(
        f"summary.md, summary.json, ratings.png and time_on_task.png in {args.out}", highlight=False
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("study", help="user studies: invite participants, serve, analyze")
    actions = cmd.add_subparsers(dest="action", metavar="action", required=True)

    invite_cmd = actions.add_parser("invite", help="create participant links (printed once)")
    _config_args(invite_cmd)
    invite_cmd.add_argument(
        "--n", type=int, default=None, help="how many (default: up to the config's `participants`)"
    )
    invite_cmd.add_argument("--out", type=Path, default=None, help="also append the links here")
    invite_cmd.set_defaults(func=run_invite)

    serve = actions.add_parser("serve", help="run the study web app")
    _config_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=run_serve)

    analyze_cmd = actions.add_parser("analyze", help="statistics, plots and summary.md of a study")
    analyze_cmd.add_argument(
        "db_url",
        metavar="DB_URL",
        help="the study database: a SQLAlchemy URL or a SQLite file path",
    )
    analyze_cmd.add_argument("--out", type=Path, default=Path("runs/study/analysis"))
    analyze_cmd.add_argument(
        "--resamples", type=positive_int, default=2000, help="bootstrap resamples"
    )
    analyze_cmd.set_defaults(func=run_analyze)
