"""Math tasks: CHAMP from the installed package, MATH-Hard from local copies, boxed answers."""

import json
import sys

import pytest

from collabrl.tasks.math import boxed_answer, load_champ, load_math_hard
from collabrl.tasks.sources import TaskSetError


def test_champ_loads_270_problems_with_answers_from_the_installed_package():
    tasks = load_champ()
    assert len(tasks) == 270
    assert len({t.id for t in tasks}) == 270
    for task in tasks:
        assert task.id.startswith("CHAMP/P_")
        assert task.artifact == "answer" and task.description == "solve a math problem"
        assert task.intent and task.reference
        assert "@@" not in task.intent + task.reference  # the package's math markers are dropped
    first = {t.id: t for t in tasks}["CHAMP/P_Combinatorics_1"]
    assert first.reference == "239"
    assert first.metadata["category"] == "Combinatorics" and first.metadata["solution"]
    assert {t.metadata["category"] for t in tasks} == {
        "Combinatorics",
        "Inequality",
        "Number-Theory",
        "Polynomial",
        "Sequence",
    }
    # Only the data file is read: the package's own code never runs.
    assert "champ_dataset" not in sys.modules


def test_champ_reads_a_copy_and_rejects_a_broken_file(tmp_path):
    copy = tmp_path / "champ.json"
    copy.write_text(
        json.dumps(
            {
                "problems": {
                    "P_Demo_1": {
                        "identifier": "P_Demo_1",
                        "_raw_text": "Find @@x@@ if @@x+1=3@@.",
                        "_raw_answer": "@@2@@",
                        "category": "Demo",
                        "solution": {"steps": [{"_raw_text": "Subtract @@1@@."}]},
                    }
                }
            }
        )
    )
    [task] = load_champ(copy)
    assert (task.id, task.intent, task.reference) == ("CHAMP/P_Demo_1", "Find x if x+1=3.", "2")
    assert task.metadata["solution"] == "Subtract 1."
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(TaskSetError, match="not a CHAMP dataset file"):
        load_champ(broken)


@pytest.mark.parametrize(
    ("solution", "answer"),
    [
        ("so the answer is $\\boxed{5}$.", "5"),
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("$\\boxed{x^{2}+\\sqrt{3}}$ done", "x^{2}+\\sqrt{3}"),
        ("first $\\boxed{1}$, finally $\\boxed{\\dfrac{3}{4}}$", "\\dfrac{3}{4}"),
        ("the set $\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}"),
        ("$\\boxed{\\text{(C)}}$", "\\text{(C)}"),
        ("$\\fbox{7}$", "7"),
        ("so $\\boxed 9$.", "9"),
        ("no box here", None),
        ("$\\boxed{}$", None),
        ("$\\boxed{\\frac{1}{2}$", None),
    ],
)
def test_boxed_answer_handles_nested_braces(solution, answer):
    assert boxed_answer(solution) == answer


ROWS = [
    {
        "problem": "What is $1+1$?",
        "solution": "Add: $\\boxed{2}$.",
        "level": "Level 5",
        "type": "Prealgebra",
    },
    {
        "problem": "Simplify $\\frac{2}{4}$.",
        "solution": "It is $\\boxed{\\frac{1}{2}}$.",
        "level": "Level 5",
        "type": "Algebra",
    },
    {"problem": "An easy one.", "solution": "$\\boxed{3}$", "level": "Level 2", "type": "Algebra"},
    {"problem": "No boxed answer.", "solution": "It is 4.", "level": "Level 5", "type": "Algebra"},
]


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "disk"])
def test_math_hard_from_local_copies(write_dataset, kind):
    # The hub copy has train and test splits; a repeated problem is kept once.
    path = write_dataset({"train": ROWS, "test": ROWS[:1]}, kind)
    tasks = list(load_math_hard(path))
    assert [t.reference for t in tasks] == ["2", "\\frac{1}{2}"]
    assert [t.intent for t in tasks] == ["What is $1+1$?", "Simplify $\\frac{2}{4}$."]
    assert all(t.id.startswith("MATH-Hard/") and t.artifact == "answer" for t in tasks)
    assert tasks[1].metadata["type"] == "Algebra" and "\\boxed" in tasks[1].metadata["solution"]
    assert len(list(load_math_hard(path, level=None))) == 3  # the level-2 problem too


def test_math_hard_ids_do_not_depend_on_the_file_format(write_dataset):
    jsonl = [t.id for t in load_math_hard(write_dataset({"train": ROWS}, "jsonl"))]
    parquet = [t.id for t in load_math_hard(write_dataset({"train": ROWS[::-1]}, "parquet"))]
    assert sorted(jsonl) == sorted(parquet)


def test_math_hard_reports_missing_columns_and_paths(write_dataset, tmp_path):
    path = write_dataset({"train": [{"question": "q", "answer": "a"}]}, "jsonl")
    with pytest.raises(TaskSetError, match="lacks column"):
        list(load_math_hard(path))
    with pytest.raises(TaskSetError, match="does not exist"):
        list(load_math_hard(tmp_path / "missing.jsonl"))


def test_math_hard_says_how_to_work_without_the_hub(hub_unreachable):
    with pytest.raises(TaskSetError) as error:
        list(load_math_hard())
    message = str(error.value)
    assert "could not reach the Hugging Face Hub" in message and "lighteval/MATH-Hard" in message
    assert "save_to_disk" in message and "path=" in message


def test_math_hard_from_a_clone_of_the_hub_repository(tmp_path, write_dataset):
    # The hub repository holds train/ and test/ folders of JSON Lines files, one per subject.
    write_dataset({"train": ROWS}, "jsonl")  # only to keep the datasets cache in tmp_path
    clone = tmp_path / "MATH-Hard"
    for split, rows in (("train", ROWS[:2]), ("test", ROWS[2:])):
        (clone / split).mkdir(parents=True)
        (clone / split / "algebra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = list(load_math_hard(clone))
    assert {t.metadata["hub_split"] for t in tasks} == {"train"}  # test holds no usable level 5
    assert [t.reference for t in tasks] == ["2", "\\frac{1}{2}"]


def test_math_hard_reports_an_unreadable_file(tmp_path, write_dataset):
    write_dataset({"train": ROWS}, "jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": \nnot json\n')
    with pytest.raises(TaskSetError, match="could not read the dataset at .*JSON"):
        list(load_math_hard(broken))
    notes = tmp_path / "notes.txt"
    notes.write_text("What is 1+1?")
    with pytest.raises(TaskSetError, match="cannot read this kind of file"):
        list(load_math_hard(notes))
