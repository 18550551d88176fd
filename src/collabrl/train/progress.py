"""Training steps on the console as a stage progress, the trainer's log lines in the log file.

A transformers ``Trainer`` prints its ``{'loss': ...}`` dictionaries itself (``PrinterCallback``,
or ``ProgressCallback`` through its tqdm bar). ``show_progress`` swaps both for
``StepProgress``: steps done / total with the time left (``collabrl.progress``; a bar on a
terminal, a line every few seconds elsewhere) and the latest loss, while every logged dictionary
goes to the ``collabrl.train`` logger, which ``collabrl.console_log`` writes to the run's
``collabrl.log``. Only the main process shows anything.
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

from collabrl.console_log import quiet_libraries
from collabrl.progress import StageProgress, console

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
