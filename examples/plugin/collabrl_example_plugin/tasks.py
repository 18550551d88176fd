"""A task-set plugin: short notes that must mention given words.

A task-set plugin is a ``collabrl.tasks.registry.TaskSet``: a ``TaskSetInfo`` (shown by
``collabrl tasks list``) and ``load(path)``, which yields ``Task`` objects in a stable order.
``path`` is None, or the local copy a config's ``tasks.path`` (CLI ``--path``) names; here a task
JSONL file. Splits come from a stable hash of each task id, as for built-in sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from collabrl.tasks.base import load_task_file
from collabrl.tasks.registry import TaskSet, TaskSetInfo
from collabrl.types import Task

NOTES = (
    ("a note to a neighbour who left apples on the doorstep", ("apples", "thanks")),
    ("a birthday card for a colleague who loves baskets of fruit", ("birthday", "basket")),
    ("a message inviting friends to pick apples on Saturday", ("apples", "saturday")),
    ("a thank-you note to a teacher at the end of the year", ("teacher", "thank")),
)


def load_greetings(path: str | Path | None) -> Iterator[Task]:
    if path is not None:
        yield from load_task_file(path)
        return
    for number, (what, keywords) in enumerate(NOTES, start=1):
        yield Task(
            id=f"greetings-{number}",
            description="write a short note",
            artifact="document",
            intent=f"Write {what}. It must mention: {', '.join(keywords)}.",
            metadata={"keywords": list(keywords)},
        )


GREETINGS = TaskSet(
    TaskSetInfo(
        name="greetings",
        description="short notes that must mention given words",
        source="collabrl example plugin",
        license="Apache-2.0",
        artifact="document",
        size=None,
        metrics=("keyword_coverage", "interactivity"),
    ),
    load_greetings,
)
