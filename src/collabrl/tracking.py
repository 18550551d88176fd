"""Experiment tracking: a run's figures sent to TensorBoard, W&B or Trackio as they are measured.

One small interface for every stage (``generate``, ``eval``, online DPO, PPO): ``scalars`` logs a
dict of numbers at a step, stamped with the wall time they were measured at; ``text`` logs a text
(a table) once; ``close`` flushes and ends the run. The writers are chosen by the config's
``tracking.report_to``; with none (the default) the tracker does nothing, so configs without a
``tracking`` section behave as before. A writer whose package is not installed stops the command
before any work with one line naming the package and the pip command (a ``ConfigError``: the CLI
prints ``error: ...`` and exits 2), never with a traceback halfway through a run.

TensorBoard events are written with tensorboard's own event writer (no torch, no TensorFlow
needed); W&B and Trackio share one writer, since both expose ``init``/``log``/``finish`` and a
``Table``. Values that are missing or not finite (an unscored figure) are left out of a step,
never logged as 0. The TRL trainers (SFT, DPO, GRPO) log through their own ``report_to``, set
from the same section by ``collabrl.train.common.trainer_arguments``. Two settings reach
transformers only through environment variables (TrainingArguments has no ``logging_dir`` since
transformers 5): ``TENSORBOARD_LOGGING_DIR`` (read when the trainer is built) and
``WANDB_PROJECT`` (read when training starts); ``WANDB_DIR`` puts W&B's files in the run's
output folder, as our own loops do, instead of the working folder. ``trainer_environment`` sets them for the block
that builds and trains the trainer (the SFT, DPO and GRPO recipes' ``train`` run inside it, so
a call from Python gets it too) and puts back what was there after, so nothing leaks into the
rest of the process.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from collabrl.config import ConfigError, TrackingConfig

LOG_FOLDER = "runs"  # under the command's output folder, where transformers puts its events too
INSTALL = {
    "tensorboard": ("tensorboard", "pip install tensorboard (or 'collabrl[train]')"),
    "wandb": ("wandb", "pip install 'collabrl[wandb]'"),
    "trackio": ("trackio", "pip install 'collabrl[trackio]'"),
}


class Writer(Protocol):
    """One tracking backend."""

    def scalars(self, values: dict[str, float], step: int, wall_time: float) -> None: ...

    def text(self, name: str, text: str, step: int) -> None: ...

    def close(self) -> None: ...


def tracker_module(name: str) -> ModuleType:
    """The package behind tracker ``name``, or a ConfigError naming it and how to install it."""
    package, command = INSTALL[name]
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"tracking.report_to: {name} needs the {package} package, which is "
            f"not installed: {command}"
        ) from None


class TensorBoardWriter:
    """Event files in ``log_dir``, read by ``tensorboard --logdir`` (and EventAccumulator)."""

    def __init__(self, log_dir: Path) -> None:
        tracker_module("tensorboard")
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        self._events = EventFileWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int, wall_time: float) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(
            value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()]
        )
        self._emit(summary, step, wall_time)

    def text(self, name: str, text: str, step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        tensor = TensorProto(
            dtype="DT_STRING",
            string_val=[text.encode()],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
        )
        self._emit(
            Summary(value=[Summary.Value(tag=name, metadata=metadata, tensor=tensor)]),
            step,
            time.time(),
        )

    def _emit(self, summary, step: int, wall_time: float) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._events.add_event(Event(wall_time=wall_time, step=step, summary=summary))

    def close(self) -> None:
        self._events.close()


class RunWriter:
    """A W&B or Trackio run: both modules have ``init``, ``log(values, step=)``, ``finish`` and
    ``Table``; each records its own wall time with every ``log``."""

    def __init__(self, module: ModuleType, **init: Any) -> None:
        self._module = module
        module.init(**init)

    def scalars(self, values: dict[str, float], step: int, wall_time: float) -> None:
        self._module.log(values, step=step)

    def text(self, name: str, text: str, step: int) -> None:
        self._module.log({name: self._module.Table(columns=["text"], data=[[text]])}, step=step)

    def close(self) -> None:
        self._module.finish()


class Tracker:
    """Sends a run's figures to every configured writer; with none it does nothing."""

    def __init__(self, writers: list[Writer]) -> None:
        self.writers = writers
        self.step = 0

    def scalars(self, values: Mapping[str, float | int | None], step: int) -> None:
        """``values`` at ``step``, stamped now; missing and non-finite values are left out."""
        numbers = {tag: float(v) for tag, v in values.items() if v is not None and math.isfinite(v)}
        self.step = max(self.step, step)
        if numbers:
            wall_time = time.time()
            for writer in self.writers:
                writer.scalars(numbers, step, wall_time)

    def text(self, name: str, text: str) -> None:
        """A text (e.g. a markdown table), at the latest step logged."""
        for writer in self.writers:
            writer.text(name, text, self.step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Tracker:  # to share an ``async with`` with the backends
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def require_trackers(settings: TrackingConfig) -> None:
    """Check, before a command does any work, that every configured tracker can be used."""
    for name in settings.report_to:
        tracker_module(name)


def open_tracker(
    settings: TrackingConfig,
    output_dir: Path,
    run_config: dict[str, Any],
    default_name: str | None = None,
) -> Tracker:
    """The tracker ``settings`` ask for; TensorBoard writes to ``log_dir`` or
    ``<output_dir>/runs``. ``run_config`` (the command's config) goes to W&B / Trackio. Raises
    ConfigError, before anything is written, when a tracker's package is missing."""
    modules = {name: tracker_module(name) for name in settings.report_to}
    name = settings.run_name or default_name
    writers: list[Writer] = []
    for tracker, module in modules.items():
        if tracker == "tensorboard":
            writers.append(TensorBoardWriter(settings.log_dir or output_dir / LOG_FOLDER))
        elif tracker == "wandb":
            output_dir.mkdir(parents=True, exist_ok=True)  # W&B keeps its files there
            writers.append(
                RunWriter(
                    module,
                    project=settings.project,
                    name=name,
                    config=run_config,
                    dir=str(output_dir),
                )
            )
        else:
            writers.append(
                RunWriter(module, project=settings.project, name=name, config=run_config)
            )
    return Tracker(writers)


def trainer_tracking(settings: TrackingConfig) -> dict[str, Any]:
    """TRL's ``report_to``, ``run_name`` and ``project`` (Trackio's) from the same settings, the
    trackers checked first. ``log_dir`` and W&B's project go by ``trainer_environment``."""
    require_trackers(settings)
    return {
        "report_to": list(settings.report_to) or "none",
        "run_name": settings.run_name,
        "project": settings.project,
    }


def trainer_variables(settings: TrackingConfig, output_dir: Path) -> dict[str, str]:
    """The environment transformers' callbacks read: TensorBoard's event folder when ``log_dir``
    is set (otherwise transformers' ``<output_dir>/runs/<date>``), W&B's project and folder."""
    variables = {}
    if "tensorboard" in settings.report_to and settings.log_dir is not None:
        variables["TENSORBOARD_LOGGING_DIR"] = str(settings.log_dir)
    if "wandb" in settings.report_to:
        variables["WANDB_PROJECT"] = settings.project
        variables["WANDB_DIR"] = str(output_dir)
    return variables


@contextmanager
def trainer_environment(settings: TrackingConfig, output_dir: Path) -> Iterator[None]:
    """``trainer_variables`` set while the block builds and trains a TRL trainer writing to
    ``output_dir``; each variable gets its earlier value (or absence) back after, even when
    training fails."""
    variables = trainer_variables(settings, output_dir)
    if "WANDB_DIR" in variables:
        output_dir.mkdir(parents=True, exist_ok=True)  # W&B keeps its files there
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
