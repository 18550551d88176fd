"""Deterministic artifact extraction: what the assistant's last reply holds, no model involved.

The LLM extractor (``extraction.ArtifactExtractor``) reads the whole conversation and is the
right choice with a capable extractor model. A small local model cannot do it (SmolLM2-135M
answers the extraction prompt with unrelated text, so every task metric would be unscored), and
some runs want task scores that cost no calls at all. With ``extractor_role: null`` task metrics
use this instead: the artifact is taken from the last assistant message, by kind:

* ``document``: the message itself;
* ``code``: its last fenced code block, else the message;
* ``answer``: the last ``\\boxed{...}``, else the text after a final "answer is"/"Answer:",
  else the last number in the message.

A conversation without an assistant message, or an answer with none of those, has no artifact
(``NO_ARTIFACT``: the conversation produced nothing, which task metrics score 0).
"""

from __future__ import annotations

import re

from collabrl.metrics.extraction import NO_ARTIFACT, Extraction, last_code_block
from collabrl.types import Conversation, Task

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_ANSWER_IS = re.compile(
    r"(?:answer is|answer:)\s*\**\s*([^\n]+?)\s*\**\s*\.?\s*$", re.IGNORECASE | re.MULTILINE
)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")


class LastReplyExtractor:
    """The ``ArtifactExtractor`` interface, reading only the last assistant message."""

    async def extract(self, conversation: Conversation, task: Task) -> Extraction:
        replies = conversation.turns("assistant")
        if not replies:
            return Extraction(None, NO_ARTIFACT, method="last_reply")
        if task.artifact == "none":
            return Extraction(None, "no_artifact_kind", method="last_reply")
        text = replies[-1].content.strip()
        if task.artifact == "code":
            text = last_code_block(Conversation(messages=[replies[-1]])) or text
        elif task.artifact == "answer":
            text = final_answer(text)
        if not text:
            return Extraction(None, NO_ARTIFACT, method="last_reply")
        return Extraction(text, method="last_reply")


def final_answer(text: str) -> str | None:
    """The answer a reply states last: boxed, announced, or the last number; None if none."""
    for pattern in (_BOXED, _ANSWER_IS):
        found = pattern.findall(text)
        if found:
            return found[-1].strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None
