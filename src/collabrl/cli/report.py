"""``collabrl report``: one self-contained HTML page from generate and eval run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from collabrl.cli.common import console, print_error, progress_bar
from collabrl.cli.paths import check_output_file
from collabrl.report import ReportError, build_report


def run_report(args: argparse.Namespace) -> int:
    check_output_file(args.output, "--output")
    try:
        with progress_bar("report", len(args.run_dirs), unit="run folders") as progress:
            path = build_report(args.run_dirs, args.output, title=args.title, progress=progress)
    except ReportError as error:
        print_error(error)
        return 2
    size = path.stat().st_size / 1e6
    console.print(
        f"report for {len(args.run_dirs)} run(s) written to {path} ({size:.1f} MB); "
        f"open it in a browser",
        highlight=False,
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("report", help="static HTML report of generate and eval runs")
    cmd.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="folders written by `collabrl generate` or `collabrl eval`",
    )
    cmd.add_argument(
        "--output",
        "-o",
        type=Path,
        default=Path("report.html"),
        help="HTML file to write (default: report.html)",
    )
    cmd.add_argument("--title", default="collabrl report", help="the page's title")
    cmd.set_defaults(func=run_report)
