"""Append-only JSONL and atomic artifacts: crash leftovers, NaN refusal, manifests."""

import json
import math
import os

import pytest

from collabrl.records import JsonlAppender, file_manifest, read_jsonl, write_atomic, write_manifest
from collabrl.tasks.base import TaskFileError, load_task_file
from collabrl.types import Score


def test_append_and_read_back(tmp_path):
    path = tmp_path / "out" / "r.jsonl"
    with JsonlAppender(path) as out:
        out.append({"a": 1})
        out.append(Score(value=0.5))
    assert list(read_jsonl(path)) == [
        {"a": 1},
        {"value": 0.5, "reason": None, "raw": [], "detail": {}},
    ]


def test_partial_last_line_is_ignored_and_cut_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b"')
    assert list(read_jsonl(path)) == [{"a": 1}]
    with JsonlAppender(path) as out:
        out.append({"a": 3})
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 3}]


def test_nan_is_never_written(tmp_path):
    with JsonlAppender(tmp_path / "r.jsonl") as out, pytest.raises(ValueError):
        out.append({"x": math.nan})
    assert (tmp_path / "r.jsonl").read_text() == ""


def test_corrupt_middle_line_names_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match="r.jsonl:2"):
        list(read_jsonl(path))


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "final.jsonl"
    write_atomic(path, ["old"])

    def broken():
        yield "new"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, broken())
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["final.jsonl"]


def test_manifest_matches_file(tmp_path):
    entry = write_atomic(tmp_path / "d.jsonl", ["{}", "{}"])
    assert entry == file_manifest(tmp_path / "d.jsonl") and entry["rows"] == 2
    manifest = write_manifest(tmp_path, [entry], command="test")
    assert json.loads(manifest.read_text())["files"][0]["rows"] == 2
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_task_file_loading_and_errors(tmp_path):
    good = tmp_path / "tasks.jsonl"
    good.write_text(
        json.dumps(
            {
                "id": "a",
                "description": "math",
                "intent": "What is 2+2?",
                "reference": "4",
                "artifact": "answer",
            }
        )
        + "\n"
        + json.dumps({"id": "b", "description": "poem", "intent": "A haiku"})
        + "\n"
    )
    tasks = load_task_file(good)
    assert [t.id for t in tasks] == ["a", "b"] and tasks[0].artifact == "answer"
    assert len(load_task_file(good, limit=1)) == 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "description": "x"}) + "\n")
    with pytest.raises(TaskFileError, match="task 1: intent"):
        load_task_file(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(
        good.read_text().splitlines()[0] + "\n" + good.read_text().splitlines()[0] + "\n"
    )
    with pytest.raises(TaskFileError, match="repeats id 'a'"):
        load_task_file(dup)
    with pytest.raises(TaskFileError, match="does not exist"):
        load_task_file(tmp_path / "none.jsonl")


def test_atomic_write_gives_an_ordinary_readable_file(tmp_path):
    path = tmp_path / "report.html"
    write_atomic(path, ["<p>hi</p>"])
    assert path.stat().st_mode & 0o777 == 0o644
