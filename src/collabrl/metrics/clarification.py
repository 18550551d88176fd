"""Did the assistant get and use the detail the request was missing?

For tasks whose user holds back one detail (``clarify-chat``, or any task whose metadata lists
``detail_keywords``): ``detail_success`` is 1 when the conversation's final assistant reply uses
every detail keyword (whole word, any case), else 0; a task without keywords is unscored, never
0. It declares ``artifact = "none"`` so eval picks it for such tasks and the artifact metrics
(accuracy, BLEU, pass rate) for theirs. ``asks_question`` is the measured behaviour behind the
"asks first" figure and the rule-based user: a reply that contains a '?'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from collabrl.types import Conversation, Score, Task

KEYWORDS_FIELD = "detail_keywords"


def asks_question(reply: str) -> bool:
    """Whether ``reply`` asks something: it contains a question mark."""
    return "?" in reply


def mentions(reply: str, keyword: str) -> bool:
    """Whether ``reply`` names ``keyword`` (whole words, any case)."""
    return re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", reply, re.IGNORECASE) is not None


def uses_detail(reply: str, keywords: Iterable[str]) -> bool:
    """Whether ``reply`` names every keyword (False when there are none)."""
    keywords = list(keywords)
    return bool(keywords) and all(mentions(reply, k) for k in keywords)


def detail_keywords(task: Task) -> list[str]:
    """The task's detail keywords (empty when its metadata has none)."""
    return [str(k) for k in task.metadata.get(KEYWORDS_FIELD, ())]


class DetailSuccess:
    """1 if the final assistant reply uses the task's detail keywords, else 0."""

    name = "detail_success"
    artifact = "none"

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        keywords = detail_keywords(task)
        if not keywords:
            return Score.unscored(f"no_{KEYWORDS_FIELD}")
        replies = conversation.turns("assistant")
        hit = bool(replies) and uses_detail(replies[-1].content, keywords)
        return Score(value=1.0 if hit else 0.0, detail={"keywords": keywords})
