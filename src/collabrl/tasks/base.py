"""Loading tasks from JSONL files: one ``Task`` per line, validated, ids unique.

A line holds the Task fields: ``id``, ``description``, ``intent`` (the hidden full request),
optional ``reference``, ``artifact`` (answer / code / document / none) and ``metadata``. Errors
name the file, the line and the field, so a broken task file is fixed in one go. Named sets
and config sources are read by ``collabrl.tasks.registry``, which builds on this.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from collabrl.records import read_jsonl
from collabrl.types import Task


class TaskFileError(ValueError):
    """A task file that cannot be used; the message says where and why."""


def load_task_file(path: str | Path, limit: int | None = None) -> list[Task]:
    path = Path(path)
    if path.is_dir():
        raise TaskFileError(f"task file {path} is a folder, not a JSONL file")
    if not path.is_file():
        raise TaskFileError(f"task file {path} does not exist")
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    try:
        rows = list(read_jsonl(path))
    except OSError as e:
        raise TaskFileError(f"cannot read task file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TaskFileError(f"task file {path} is not UTF-8 text") from None
    except ValueError as e:
        raise TaskFileError(str(e)) from None
    for number, row in enumerate(rows, start=1):
        try:
            task = Task.model_validate(row)
        except ValidationError as e:
            fields = "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise TaskFileError(f"{path}: task {number}: {fields}") from None
        if task.id in seen:
            raise TaskFileError(
                f"{path}: task {number} repeats id {task.id!r} (first at {seen[task.id]})"
            )
        seen[task.id] = number
        tasks.append(task)
        if limit is not None and len(tasks) >= limit:
            break
    if not tasks:
        raise TaskFileError(f"task file {path} holds no tasks")
    return tasks
