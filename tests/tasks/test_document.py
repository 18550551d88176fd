"""Writing tasks: the packaged doc-chat set, Medium articles from local copies, truncation."""

import re
from pathlib import Path

import pytest

from collabrl.tasks.base import load_task_file
from collabrl.tasks.document import doc_chat_file, load_doc_chat, load_medium, truncate_words
from collabrl.tasks.sources import TaskSetError

ROOT = Path(__file__).resolve().parents[2]


def test_doc_chat_tasks_are_complete_and_sized():
    tasks = load_doc_chat()
    assert len(tasks) >= 18 and len({t.id for t in tasks}) == len(tasks)
    assert len({t.metadata["genre"] for t in tasks}) >= 10  # varied kinds of writing
    for task in tasks:
        assert task.id.startswith("doc-chat/") and task.artifact == "document"
        assert task.description.startswith("help the user write")
        assert 80 <= len(task.reference.split()) <= 300, task.id
        assert len(task.intent.split()) >= 40, task.id  # concrete details, not a one-liner


def test_doc_chat_ships_as_package_data():
    assert doc_chat_file().is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'collabrl = \[[^\]]*"tasks/data/\*\.jsonl"', pyproject)  # the wheel ships it
    assert load_doc_chat(doc_chat_file()) == load_task_file(doc_chat_file())


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short text stays", 10, "short text stays"),
        (
            "One two three four.\n\nFive six seven eight.\n\nNine ten eleven twelve.",
            9,
            "One two three four.\n\nFive six seven eight.",
        ),
        ("One two three. Four five six. Seven eight nine ten", 8, "One two three. Four five six."),
        ("one two three four five six", 4, "one two three four"),
    ],
)
def test_truncate_words_cuts_at_natural_ends(text, limit, expected):
    assert truncate_words(text, limit) == expected


def _article(paragraphs: int, words: int = 60) -> str:
    sentence = " ".join(["word"] * (words - 1)) + "."
    return "\n\n".join(f"Paragraph {i}: {sentence}" for i in range(paragraphs))


ROWS = [
    {
        "title": "Why Sleep Matters",
        "text": _article(12),
        "url": "https://medium.com/a",
        "authors": "['Ana']",
        "timestamp": "2021-01-01",
        "tags": "['Health']",
    },
    {
        "title": "A Stub",
        "text": "Too short to be an article.",
        "url": "https://medium.com/b",
        "authors": "[]",
        "timestamp": "2021-01-02",
        "tags": "[]",
    },
    {
        "title": "Learning Rust",
        "text": _article(3),
        "url": "https://medium.com/c",
        "authors": "['Bo']",
        "timestamp": "2021-01-03",
        "tags": "['Programming']",
    },
]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "disk"])
def test_medium_articles_from_local_copies(write_dataset, kind):
    tasks = list(load_medium(write_dataset({"train": ROWS + ROWS[:1]}, kind)))
    assert [t.metadata["title"] for t in tasks] == ["Why Sleep Matters", "Learning Rust"]
    long, short = tasks
    assert long.intent.startswith('Write an article under 500 words about "Why Sleep Matters".')
    assert 250 <= len(long.reference.split()) <= 500
    assert long.reference.endswith(".") and long.reference in long.intent
    assert short.reference == ROWS[2]["text"] and short.artifact == "document"
    assert long.metadata["url"] == "https://medium.com/a"


def test_medium_word_budget(write_dataset):
    [task] = load_medium(write_dataset({"train": ROWS[:1]}, "jsonl"), max_words=200)
    assert "under 200 words" in task.intent and len(task.reference.split()) <= 200


def test_medium_says_how_to_work_without_the_hub(hub_unreachable):
    with pytest.raises(TaskSetError, match="Kamaljp/medium_articles"):
        list(load_medium())
