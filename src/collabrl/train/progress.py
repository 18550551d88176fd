"""Training progress on the console: TRL trainers' steps as a stage progress (their log lines go
to the log file), and one line per round or update of our own loops.

A transformers ``Trainer`` prints its ``{'loss': ...}`` dictionaries itself (``PrinterCallback``,
or ``ProgressCallback`` through its tqdm bar). ``show_progress`` swaps both for
``StepProgress``: steps done / total with the time left (``collabrl.progress``; a bar on a
terminal, a line every few seconds elsewhere) and the latest loss, while every logged dictionary
goes to the ``collabrl.train`` logger, which ``collabrl.console_log`` writes to the run's
``collabrl.log``. Only the main process shows anything.

Online DPO and PPO (one process) report each finished unit with ``UnitReporter``: a console line
with every number the unit measured (``online-dpo round 2/4: mean_mr 0.41  pairs 12 ...``), the
same step's figures to the tracker ``tracking.report_to`` asks for, and meanwhile units done of
the total with the time left, as the TRL recipes show steps.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from collabrl.config import Config
from collabrl.console_log import quiet_libraries
from collabrl.progress import StageProgress, console
from collabrl.tracking import open_tracker

log = logging.getLogger("collabrl.train")


class StepProgress(TrainerCallback):
    """Steps done / ``max_steps`` and the last loss; logged dictionaries to ``collabrl.train``."""

    def __init__(self, console: Console, stage: str = "train", **progress_options) -> None:
        self.console, self.stage, self.options = console, stage, progress_options
        self.progress: StageProgress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress = StageProgress(
                self.console,
                self.stage,
                "steps",
                state.max_steps,
                completed=state.global_step,
                **self.options,
            )
            self.progress.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        log.info("step %d: %s", state.global_step, json.dumps(logs, default=str))
        loss = logs.get("loss")
        if self.progress is not None and isinstance(loss, int | float) and math.isfinite(loss):
            self.progress.update(state.global_step, status=f"loss {loss:.4g}")

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


@contextmanager
def show_progress(trainer, console: Console = console) -> Iterator[None]:
    """While the block trains: ``trainer``'s printing callbacks replaced with ``StepProgress``
    on ``console``, library output quietened (``quiet_libraries``); the progress ends with the
    block, also when training raised."""
    quiet_libraries()
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    steps = StepProgress(console)
    trainer.add_callback(steps)
    try:
        yield
    finally:
        steps.close()


class UnitReporter:
    """Each finished unit (round, update) of ``stage``: its numbers on one console line, its
    figures to the run's tracker; while units run, ``StageProgress`` shows units done of
    ``total`` and the time left (a unit of a large model can take minutes). ``done``: units
    finished before this run (a resume). A context manager: the tracker closes with it."""

    def __init__(
        self, config: Config, stage: str, unit: str, total: int, done: int = 0, **progress_options
    ) -> None:
        self.label, self.total = f"{stage} {unit}", total
        self.progress = StageProgress(
            console, stage, f"{unit}s", total, completed=done, **progress_options
        )
        self.tracker = open_tracker(
            config.tracking, config.train.output_dir, config.model_dump(mode="json"), stage
        )

    def log(self, step: int, metrics: dict, figures: dict, note: object = None) -> None:
        """Print ``metrics``' numbers (and ``note`` when it has something), track ``figures``."""
        numbers = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        shown = "  ".join(f"{k} {v:.4g}" for k, v in numbers.items())
        line = f"{self.label} {step}/{self.total}: {shown}" + (f"  ({note})" if note else "")
        console.print(line, highlight=False, soft_wrap=True)
        self.tracker.scalars(figures, step)
        self.progress.update(step)

    def __enter__(self) -> UnitReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.progress.__exit__(*exc)
        finally:
            self.tracker.close()
