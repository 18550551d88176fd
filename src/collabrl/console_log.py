"""The run's log file: what libraries say goes there, the console keeps what collabrl says.

A command that runs models (``generate``, ``export``, ``eval``, ``train``, ``demo``) writes
``collabrl.log`` in its output folder (the demo: next to its report), and while it runs:
- Python warnings (deprecations and the like) are logged, not printed;
- log records of transformers, TRL, peft, accelerate, datasets, torch, ... go to the file only;
  records of ``collabrl.*`` loggers go to the file and, at ``--log-level`` and above, to the
  console as before;
- the progress bars of transformers, datasets and the Hugging Face hub are off (each stage shows
  its own, ``collabrl.progress``); the trainer's ``{'loss': ...}`` lines go to the file
  (``collabrl.train.progress``).
Our own errors (``error: ...``) and results are printed to the console as always. The file is
appended to, so a rerun keeps the earlier run's lines, under a header with the command and
the time; it is created with the first record, so a run that logged nothing leaves no file.

Under a multi-process launch (``torchrun``, ``accelerate launch``: every process runs the command)
each process writes its own file, so their lines never interleave: rank 0 (the main process)
``collabrl.log``, rank N ``collabrl.rank<N>.log``. The rank is the launcher's (``RANK``, or MPI's).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from collabrl.config import Config
from collabrl.launcher import process_rank

LOG_NAME = "collabrl.log"
OUR_LOGGER = "collabrl"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_name(rank: int) -> str:
    """The log file of process ``rank``: the main process keeps the plain name."""
    return LOG_NAME if rank == 0 else f"collabrl.rank{rank}.log"


def ours_only(record: logging.LogRecord) -> bool:
    """The console's filter: collabrl's own records only."""
    return record.name == OUR_LOGGER or record.name.startswith(OUR_LOGGER + ".")


def uses_local_models(config: Config) -> bool:
    """Whether a role runs a model in this process (``hf_local``): transformers will speak."""
    return any(getattr(backend, "kind", None) == "hf_local" for backend in config.roles.values())


def quiet_libraries() -> None:
    """Hugging Face libraries that are already imported: their log records propagate to the
    root logger (the file) instead of their own stderr handler, and their progress bars are off.
    Call it again after importing one (training does); libraries not imported are not imported."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        from datasets.utils import logging as ds_logging

        ds_logging.enable_propagation()
        ds_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    _quiet_deepspeed()


def _quiet_deepspeed() -> None:
    """DeepSpeed logs through its own stdout handler, and warns on import when it finds no GPU
    ("Setting accelerator to CPU"): name the CPU before it is imported on a machine without a
    GPU (what it would pick anyway), and send its records to the file once it is imported."""
    if "deepspeed" not in sys.modules:
        if "transformers" in sys.modules and importlib.util.find_spec("deepspeed") is not None:
            import torch  # a command that runs a model: torch is needed anyway

            if not torch.cuda.is_available():
                os.environ.setdefault("DS_ACCELERATOR", "cpu")
        return
    logger = logging.getLogger("DeepSpeed")
    for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
        logger.removeHandler(handler)
    logger.propagate = True


class RunLog(logging.FileHandler):
    """The log file, created (with its folder, and ``header`` as its first line) only when the
    first record comes: a command refused for bad input writes nothing."""

    def __init__(self, path: Path, header: str) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.header = header
        self.setFormatter(logging.Formatter(FORMAT))

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        stream = super()._open()
        stream.write(self.header + "\n")
        return stream


@contextmanager
def log_file(folder: str | Path, command: str, *, local_models: bool = False) -> Iterator[Path]:
    """Route library output to ``<folder>/collabrl.log`` (``collabrl.rank<N>.log`` on rank N > 0)
    while the block runs (see above). ``local_models``: the block will load transformers, so it
    is quietened from the start."""
    if local_models:
        import transformers.utils.logging  # noqa: F401  (imported for quiet_libraries)
    path = Path(folder) / log_name(process_rank())
    root, ours = logging.getLogger(), logging.getLogger(OUR_LOGGER)
    handler = RunLog(
        path, f"---- collabrl {command} ---- {datetime.now().isoformat(' ', 'seconds')}"
    )
    # basicConfig's handler (stderr): it keeps --log-level, for collabrl's records only
    console_handlers = [h for h in root.handlers if type(h) is logging.StreamHandler]
    saved = (ours.level, [h.level for h in console_handlers])
    for existing in console_handlers:
        existing.setLevel(max(existing.level, root.level))
        existing.addFilter(ours_only)
    root.addHandler(handler)
    ours.setLevel(min(root.level, logging.INFO))  # the file has collabrl's INFO lines too
    logging.captureWarnings(True)
    quiet_libraries()
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()
        ours.setLevel(saved[0])
        for existing, level in zip(console_handlers, saved[1]):
            existing.setLevel(level)
            existing.removeFilter(ours_only)
