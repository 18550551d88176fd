"""A metric plugin: the share of a task's keywords that the final artifact mentions.

A metric plugin is a factory called as ``factory(options, tools)``: ``options`` are the spec's
``options`` over ``defaults`` (unknown ones are refused because ``defaults`` is given), and
``tools`` (``collabrl.metrics.registry.MetricTools``) hands out the run's backends
(``tools.backend_for(role)``) and artifact extractors (``tools.extractor_for(role)``; None: the
deterministic last-reply extractor) -- the same shared, cached objects the built-in metrics use.
The object it returns has a ``name`` and ``async __call__(conversation, task) -> Score``, and
answers ``Score.unscored(reason)`` when it cannot decide, never a made-up 0.
"""

from __future__ import annotations

from typing import Any

from collabrl.metrics.registry import MetricTools
from collabrl.types import Conversation, Score, Task


class KeywordCoverage:
    """Value: found keywords / ``task.metadata["keywords"]``, in the extracted artifact."""

    name = "keyword_coverage"
    defaults = {"extractor_role": None}

    def __init__(self, options: dict[str, Any], tools: MetricTools) -> None:
        self.extractor = tools.extractor_for(options["extractor_role"])

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        keywords = task.metadata.get("keywords")
        if not keywords:
            return Score.unscored("no_keywords")
        extraction = await self.extractor.extract(conversation, task)
        if extraction.text is None:
            return Score.unscored(f"no_artifact:{extraction.reason}")
        text = extraction.text.lower()
        found = [word for word in keywords if word.lower() in text]
        return Score(value=len(found) / len(keywords), detail={"found": found})
