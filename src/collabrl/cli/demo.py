"""``collabrl demo``: the whole method in one command, on the models of one config.

The stages are the same code as their own commands: the data engine (``generate``), preference
pairs (``export``), offline DPO on a LoRA (``train dpo``), base vs trained vs proactive on
held-out tasks (``eval``), and the HTML report (``report``). ``--size NAME`` applies the
config's ``demo.sizes[NAME]`` overrides before the command line's own (``make demo`` passes
``DEMO_SIZE``; CI runs a small size). A rerun continues the data engine from its records and the
response cache, and trains and evaluates afresh: the adapter is new, so old eval records are not.

Each stage shows its progress; library warnings and training logs go to ``collabrl.log`` next to
the report (``collabrl.console_log``). The final screen is the effect (every figure of eval's
``summary.json`` with its interval and the paired differences), the time per stage and where the
report and the log file are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.table import Table

from collabrl.backends.accounting import UsageMeter
from collabrl.cli.common import add_config_args, console, print_error, progress_bar
from collabrl.cli.effect_table import effect_tables
from collabrl.cli.evaluate import evaluate
from collabrl.cli.generate import generate, run_export
from collabrl.cli.paths import check_cache, check_output_dir, check_output_file
from collabrl.config import Config, ConfigError, load_config
from collabrl.console_log import log_file, quiet_libraries
from collabrl.progress import duration

SMALL_MODEL = "smollm2-135m-instruct"
HONESTY = (
    "A 135M model plays {roles} in this run: it proves that the loop runs end to end, but it is a "
    "weak user simulator and cannot judge, so these numbers say little about the method. For real "
    "runs bind the roles to real models (README: The demo; configs/demo-real.yaml)."
)


def honesty_note(config: Config) -> str | None:
    """The warning to print when the demo's small offline model plays any role, else None."""
    roles = sorted(
        name
        for name, backend in config.roles.items()
        if getattr(backend, "model", None) == SMALL_MODEL and name in ("user", "judge")
    )
    return HONESTY.format(roles=", ".join(roles)) if roles else None


def demo_config(args: argparse.Namespace) -> Config:
    """The config with ``demo.sizes[--size]`` applied, then the command line's overrides."""
    config = load_config(args.config, args.overrides)
    if args.size:
        sizes = config.demo.sizes
        if args.size not in sizes:
            known = ", ".join(sorted(sizes)) or "none"
            raise ConfigError(
                f"--size {args.size}: demo.sizes has no such entry (defined: {known})"
            )
        config = load_config(args.config, [*sizes[args.size], *args.overrides])
    _check_trained_system(config)
    return config


def _check_trained_system(config: Config) -> None:
    """Some eval system must answer with the adapter this demo trains, or eval shows no effect."""
    final = (config.train.output_dir / "final").resolve()
    for system in config.eval.systems:
        adapter = getattr(config.role(system.role), "adapter", None)
        if adapter is not None and Path(adapter).resolve() == final:
            return
    raise ConfigError(
        f"demo: no eval system uses the adapter the demo trains ({final}); give an "
        f"hf_local role `adapter: {config.train.output_dir / 'final'}` and an eval "
        f"system with that role"
    )


def check_outputs(config: Config) -> None:
    """Every place the demo writes, checked before its first stage spends any time."""
    for key in ("generate", "export", "train", "eval"):
        check_output_dir(getattr(config, key).output_dir, f"{key}.output_dir")
    check_output_file(config.demo.report, "demo.report")
    check_cache(config)


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    console.rule(f"[bold]{name}")
    start = time.monotonic()
    yield
    timings[name] = time.monotonic() - start
    console.print(f"{name}: {duration(timings[name])}", highlight=False)


def run_demo(args: argparse.Namespace) -> int:
    config = demo_config(args)
    check_outputs(config)  # before the training libraries take seconds to import
    note = honesty_note(config)
    if note:
        console.print(note, style="yellow")
    with log_file(run_folder(config), "demo", local_models=True) as log:
        status = run_stages(config, log)
    if note and status == 0:
        console.print(note, style="yellow")
    return status


def run_folder(config: Config) -> Path:
    """Where the demo's log file goes: the folder of its report (``runs/demo``)."""
    return config.demo.report.parent


def run_stages(config: Config, log: Path) -> int:
    """Every stage in order, each timed; the final screen when all ran."""
    from collabrl.models import resolve_model
    from collabrl.report import build_report
    from collabrl.train import dpo
    from collabrl.train.common import CheckpointError, NonFiniteLossError
    from collabrl.train.data import TrainingDataError

    quiet_libraries()  # datasets came with the training modules: its progress bars go quiet too
    meter, timings = UsageMeter(), {}
    with stage("model", timings):  # converts the shipped GGUF once, then reuses the folder
        console.print(f"{config.train.model} -> {resolve_model(config.train.model)}")
    with stage("generate", timings):
        if asyncio.run(generate(config, meter)) != 0:
            return 1
    with stage("export", timings):
        run_export(config)
    with stage("train dpo", timings):
        try:
            final = dpo.train(config)
        except (TrainingDataError, CheckpointError, NonFiniteLossError) as error:
            print_error(error)
            return 2
        console.print(f"adapter saved to {final}", highlight=False)
    with stage("eval", timings):
        shutil.rmtree(config.eval.output_dir, ignore_errors=True)
        asyncio.run(evaluate(config, meter))
    with stage("report", timings):
        runs = [config.eval.output_dir, config.generate.output_dir]  # the page opens on eval
        with progress_bar("report", len(runs), unit="run folders") as progress:
            report = build_report(
                runs, config.demo.report, title="collabrl demo", progress=progress
            )
    print_outcome(config, meter, timings, report, log)
    return 0


def print_outcome(
    config: Config, meter: UsageMeter, timings: dict[str, float], report: Path, log: Path
) -> None:
    """The final screen: the effect with its intervals, model usage, time per stage, where the
    report and the log file are."""
    console.rule("[bold]demo done")
    summary = json.loads((config.eval.output_dir / "summary.json").read_text())
    console.print(effect_tables(summary))
    console.print(meter.table("Model usage, all stages"))
    times = Table(title="Time per stage", title_justify="left")
    times.add_column("stage")
    times.add_column("time", justify="right")
    for name, seconds in [*timings.items(), ("total", sum(timings.values()))]:
        times.add_row(name, duration(seconds))
    console.print(times)
    console.print(f"report: {report.resolve()} (open it in a browser)", highlight=False)
    console.print(f"log:    {log.resolve()} (library warnings and training logs)", highlight=False)


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "demo", help="the whole method in one go: generate, export, train dpo, eval, report"
    )
    add_config_args(cmd)
    cmd.add_argument("--size", help="apply the config's demo.sizes[SIZE] overrides (e.g. ci)")
    cmd.set_defaults(func=run_demo)
