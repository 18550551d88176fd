"""``collabrl tasks list|show|export``: see the named task sets and turn one into a task file.

``list`` shows the built-in sets, then those installed packages add as plugins (entry-point
group ``collabrl.tasks``); ``show`` and ``export`` also take a ``module:attribute`` reference.

``export`` writes the JSONL that ``load_task_file`` reads, so a set can be inspected, edited
and then used anywhere a task file is accepted. Unknown names, missing packages and an
unreachable hub end the command with a message (exit status 2), not a traceback.
"""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from collabrl.cli.common import console, positive_int
from collabrl.cli.paths import check_output_file
from collabrl.records import dumps_record, write_atomic
from collabrl.tasks.registry import SPLITS, TaskSetInfo, available_task_sets, load_task_set
from collabrl.tasks.sources import TaskSetError
from collabrl.types import Task

EXCERPT_CHARS = 400


def _size(info: TaskSetInfo) -> str:
    if info.hub is not None:
        return "hub"
    if info.size is None:
        return f"[yellow]pip install {info.requires}[/yellow]" if info.requires else "?"
    return str(info.size)


def tasks_list(args: argparse.Namespace) -> int:
    table = Table(title="Task sets")
    for column in ("name", "artifact", "size", "source", "license", "default metrics"):
        table.add_column(column)
    for info in available_task_sets():
        table.add_row(
            escape(info.name),
            info.artifact,
            _size(info),
            escape(info.source),
            escape(info.license),
            ", ".join(info.metrics),
        )
    console.print(table)
    console.print(
        "Hub sets read a local copy with --path (a save_to_disk folder or a data file).",
        highlight=False,
    )
    return 0


def _excerpt(text: str | None, chars: int = EXCERPT_CHARS) -> str:
    if text is None:
        return "-"
    text = text.strip()
    return text if len(text) <= chars else text[:chars].rstrip() + " …"


def _show_task(task: Task) -> None:
    console.rule(f"[bold]{escape(task.id)}[/bold]")
    console.print(
        f"[bold]description:[/bold] {escape(task.description)}   "
        f"[bold]artifact:[/bold] {task.artifact}",
        highlight=False,
    )
    console.print("[bold]intent:[/bold]", escape(_excerpt(task.intent)), highlight=False)
    console.print("[bold]reference:[/bold]", escape(_excerpt(task.reference)), highlight=False)
    if task.metadata:
        console.print(f"[bold]metadata:[/bold] {escape(', '.join(task.metadata))}", highlight=False)


def tasks_show(args: argparse.Namespace) -> int:
    tasks = load_task_set(args.name, split=args.split, limit=args.limit, path=args.path)
    for task in tasks:
        _show_task(task)
    console.print(
        f"{len(tasks)} task(s) shown from {args.name}"
        + (f" ({args.split} split)" if args.split else ""),
        highlight=False,
    )
    return 0


def tasks_export(args: argparse.Namespace) -> int:
    check_output_file(args.output, "--output")
    tasks = load_task_set(args.name, split=args.split, limit=args.limit, path=args.path)
    if not tasks:
        raise TaskSetError(f"{args.name} has no tasks to export with these options")
    write_atomic(args.output, (dumps_record(task) for task in tasks))
    console.print(f"wrote {len(tasks)} task(s) from {args.name} to {args.output}", highlight=False)
    return 0


def _selection_args(parser: argparse.ArgumentParser, limit: int | None) -> None:
    parser.add_argument(
        "name", help="task set name (see `collabrl tasks list`) or module:attribute"
    )
    parser.add_argument("--split", choices=SPLITS, help="only the train or the test split")
    parser.add_argument("--limit", type=positive_int, default=limit, help="at most this many tasks")
    parser.add_argument("--path", help="read the set from this local copy instead")


def register(commands: argparse._SubParsersAction) -> None:
    tasks = commands.add_parser("tasks", help="list, show and export the named task sets")
    sub = tasks.add_subparsers(dest="subcommand", metavar="subcommand", required=True)
    listing = sub.add_parser("list", help="the task sets: artifact, size, source, license")
    listing.set_defaults(func=tasks_list)
    show = sub.add_parser("show", help="print a few tasks of a set")
    _selection_args(show, limit=3)
    show.set_defaults(func=tasks_show)
    export = sub.add_parser("export", help="write a set as a task JSONL file")
    _selection_args(export, limit=None)
    export.add_argument("--output", "-o", required=True, help="the JSONL file to write")
    export.set_defaults(func=tasks_export)
