"""Writing tasks: the user wants a document; success is closeness (BLEU) to a target document.

- **doc-chat**: about twenty writing tasks written for this project (emails, letters, speeches,
  poems, summaries, product texts...), shipped as ``collabrl/tasks/data/doc_chat.jsonl``. Each
  hidden intent holds the concrete details a real person would have in mind (audience, tone,
  length, facts to include) and the reference is a document of 80-300 words that meets it.
- **medium-doc**: Medium articles from the Hugging Face Hub (``Kamaljp/medium_articles``;
  columns title, text, url, authors, timestamp, tags), as in the CollabLLM paper: the intent is
  "write an article under 500 words about {title}" plus the article the user has in mind, and
  the reference is that article, cut at a paragraph or sentence end to fit the word budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from collabrl.tasks.base import load_task_file
from collabrl.tasks.sources import digest, iter_rows, load_dataset_splits
from collabrl.types import Task

MEDIUM = "Kamaljp/medium_articles"
MEDIUM_COLUMNS = ("title", "text")
MEDIUM_DESCRIPTION = "help the user write an article"
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s")


def doc_chat_file() -> Path:
    """The doc-chat task file shipped inside the package."""
    return Path(str(resources.files("collabrl.tasks") / "data" / "doc_chat.jsonl"))


def load_doc_chat(path: str | Path | None = None) -> list[Task]:
    """The doc-chat tasks, from the packaged file or a task JSONL file at ``path``."""
    return load_task_file(path or doc_chat_file())


def _count(text: str) -> int:
    return len(text.split())


def truncate_words(text: str, max_words: int) -> str:
    """``text`` cut to at most ``max_words`` words, at a natural end.

    The cut falls at the last paragraph end that fits, when that keeps at least half the budget;
    otherwise at the last sentence end that fits; otherwise right after ``max_words`` words.
    Line breaks inside the kept text are preserved.
    """
    text = text.strip()
    words = list(re.finditer(r"\S+", text))
    if len(words) <= max_words:
        return text
    head = text[: words[max_words - 1].end()]
    paragraph_ends = [m.start() for m in re.finditer(r"\n\s*\n", head)]
    if paragraph_ends and _count(head[: paragraph_ends[-1]]) >= max_words // 2:
        return head[: paragraph_ends[-1]].strip()
    sentence_ends = [m.end() for m in _SENTENCE_END.finditer(head + " ")]
    return head[: sentence_ends[-1]].strip() if sentence_ends else head


def medium_intent(title: str, article: str, max_words: int) -> str:
    return (
        f'Write an article under {max_words} words about "{title}".\n\n'
        "This is the article I have in mind. Guide the assistant toward its points, structure "
        "and tone one piece at a time, as a writer with a clear picture would; never paste it:\n\n"
        f"{article}"
    )


def load_medium(
    source: str | Path = MEDIUM, max_words: int = 500, min_words: int = 100
) -> Iterator[Task]:
    """Medium-article writing tasks from the hub or a local copy, one by one.

    Articles shorter than ``min_words`` (stubs, link lists) are skipped. Ids are digests of the
    title and text, so a task keeps its id across copies; repeated articles are kept once.
    """
    splits = load_dataset_splits(source, MEDIUM_COLUMNS)
    seen: set[str] = set()
    for _, row in iter_rows(splits):
        title, text = (row["title"] or "").strip(), (row["text"] or "").strip()
        if not title or _count(text) < min_words:
            continue
        task_id = f"Medium/{digest(title + chr(10) + text)}"
        if task_id in seen:
            continue
        seen.add(task_id)
        article = truncate_words(text, max_words)
        metadata = {"source": "Medium", "title": title}
        metadata.update({key: row[key] for key in ("url", "authors", "tags") if row.get(key)})
        yield Task(
            id=task_id,
            description=MEDIUM_DESCRIPTION,
            intent=medium_intent(title, article, max_words),
            reference=article,
            artifact="document",
            metadata=metadata,
        )
