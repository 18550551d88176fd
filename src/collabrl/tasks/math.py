"""Math tasks: the user wants a problem solved; success is the right final answer.

Two sources, both mapped to ``artifact="answer"`` tasks whose hidden intent is the problem text
and whose reference is the final answer:

- **CHAMP** (``math-chat``): 270 competition-style problems with written answers, shipped in the
  MIT-licensed PyPI package ``champ-dataset`` as one JSON file (``dataset_files/v0.json``:
  ``{"problems": {id: {...}}, "concepts": ..., "hints": ...}``). Math inside its texts is wrapped
  in ``@@`` markers, which we drop. The file is read from the installed package, offline.
- **MATH-Hard** (``math-hard``): the level-5 problems of MATH on the Hugging Face Hub
  (``lighteval/MATH-Hard``; columns problem, solution, level, type), the set the CollabLLM paper
  uses. The answer is the last ``\\boxed{...}`` of the worked solution.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from collabrl.tasks.sources import (
    TaskSetError,
    digest,
    iter_rows,
    load_dataset_splits,
    package_file,
)
from collabrl.types import Task

logger = logging.getLogger(__name__)

DESCRIPTION = "solve a math problem"
CHAMP_FILE = "dataset_files/v0.json"
MATH_HARD = "lighteval/MATH-Hard"
MATH_HARD_COLUMNS = ("problem", "solution")
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def boxed_answer(solution: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``solution``.

    Braces nest (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``); escaped braces ``\\{ \\}``
    are content, not structure. The brace-less form ``\\boxed 5`` gives ``5``. None when there is
    no box or it is empty or never closed.
    """
    start = max(solution.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    command = next(c for c in _BOX_COMMANDS if solution.startswith(c, start))
    rest = solution[start + len(command) :]
    if rest.startswith(" "):
        tokens = rest.split("$")[0].split()
        return tokens[0] if tokens else None
    if not rest.startswith("{"):
        return None
    depth, i = 0, 0
    while i < len(rest):
        char = rest[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i].strip() or None
        i += 1
    return None


def _strip_markers(text: str) -> str:
    return text.replace("@@", "")


@lru_cache(maxsize=4)
def _champ_problems(path: str) -> tuple[tuple[str, str, str, str, str], ...]:
    """(id, problem, answer, category, solution) per CHAMP problem; the file is 70 MB, read once."""
    try:
        with open(path, encoding="utf-8") as f:
            problems = json.load(f)["problems"]
    except (OSError, ValueError, KeyError) as error:
        raise TaskSetError(f"{path}: not a CHAMP dataset file ({error!r})") from None
    rows = []
    for identifier, p in problems.items():
        steps = (p.get("solution") or {}).get("steps") or []
        solution = "\n".join(_strip_markers(s["_raw_text"]) for s in steps)
        rows.append(
            (
                identifier,
                _strip_markers(p["_raw_text"]),
                _strip_markers(p["_raw_answer"]),
                p.get("category", ""),
                solution,
            )
        )
    return tuple(rows)


def load_champ(path: str | Path | None = None) -> list[Task]:
    """The CHAMP problems, from the installed ``champ-dataset`` package or a copy at ``path``."""
    file = Path(path) if path else package_file("champ_dataset", CHAMP_FILE, "champ-dataset")
    if not file.is_file():
        raise TaskSetError(f"CHAMP file {file} does not exist")
    return [
        Task(
            id=f"CHAMP/{identifier}",
            description=DESCRIPTION,
            intent=problem,
            reference=answer,
            artifact="answer",
            metadata={"source": "CHAMP", "category": category, "solution": solution},
        )
        for identifier, problem, answer, category, solution in _champ_problems(str(file.resolve()))
    ]


def _level_matches(row: dict, level: int | None) -> bool:
    if level is None or "level" not in row:
        return True
    return str(row["level"]).strip() in (f"Level {level}", str(level))


def load_math_hard(source: str | Path = MATH_HARD, level: int | None = 5) -> Iterator[Task]:
    """MATH-Hard problems of ``level`` (None: all) from the hub or a local copy, one by one.

    Ids are digests of the problem text, so the same problem keeps its id (and its split)
    whichever copy or file format it comes from; repeated problems are kept once. Problems
    whose solution has no boxed answer are skipped and counted in a warning.
    """
    splits = load_dataset_splits(source, MATH_HARD_COLUMNS)
    seen: set[str] = set()
    skipped = 0
    for hub_split, row in iter_rows(splits):
        if not _level_matches(row, level):
            continue
        answer = boxed_answer(row["solution"])
        task_id = f"MATH-Hard/{digest(row['problem'])}"
        if answer is None:
            skipped += 1
            continue
        if task_id in seen:
            continue
        seen.add(task_id)
        yield Task(
            id=task_id,
            description=DESCRIPTION,
            intent=row["problem"].strip(),
            reference=answer,
            artifact="answer",
            metadata={
                "source": "MATH-Hard",
                "hub_split": hub_split,
                "type": row.get("type", ""),
                "level": row.get("level", ""),
                "solution": row["solution"],
            },
        )
    if skipped:
        logger.warning("MATH-Hard: skipped %d problem(s) without a \\boxed{} answer", skipped)
