"""BLEU of the final document against the task's reference document.

``Bleu`` ("bleu") is the metric to use: sentence BLEU over *words* with sacrebleu's standard
13a tokenizer and default smoothing, as a value in [0, 1] (sacrebleu's score / 100).

``BleuChar`` ("bleu_char") exists only to reproduce the numbers of the original CollabLLM code,
which called NLTK's ``sentence_bleu`` on raw strings, so its "tokens" were characters (spaces
and newlines included), with 4-gram uniform weights and no smoothing. Character n-grams are
shared by almost any two English texts, so that variant rewards surface similarity and is not
comparable with word BLEU. We compute the same quantity with sacrebleu's character tokenizer
(smoothing off, no effective order), after mapping each whitespace character to a private
stand-in so that, as in NLTK, spaces count as characters. ``configs/paper-doc.yaml`` (paper
mode) uses it, in the reward and in eval, so that its numbers compare with the paper's Table 1.

Both extract the document with the shared ``ArtifactExtractor``. No reference or a failed
extraction -> unscored; an extractor that finds no document -> 0.
"""

from __future__ import annotations

import re

from sacrebleu.metrics.bleu import BLEU

from collabrl.metrics.extraction import ArtifactExtractor, missing_artifact_score
from collabrl.types import Conversation, Score, Task

_WORD_BLEU = BLEU(effective_order=True)
_CHAR_BLEU = BLEU(tokenize="char", smooth_method="none", effective_order=False)
_WHITESPACE = re.compile(r"\s")


def word_bleu(hypothesis: str, reference: str) -> float:
    """Sentence BLEU on words, in [0, 1]."""
    return _WORD_BLEU.sentence_score(hypothesis, [reference]).score / 100


def char_bleu(hypothesis: str, reference: str) -> float:
    """The original CollabLLM code's character BLEU (NLTK ``sentence_bleu`` on strings), in [0, 1]."""

    def visible(text: str) -> str:  # sacrebleu's char tokenizer drops whitespace; NLTK keeps it
        return _WHITESPACE.sub(lambda m: chr(0xF0000 + ord(m.group())), text)

    # corpus_score of one segment = sentence BLEU without effective order, minus the warning
    return _CHAR_BLEU.corpus_score([visible(hypothesis)], [[visible(reference)]]).score / 100


class Bleu:
    """Word-level sentence BLEU of the final document against ``task.reference``."""

    name = "bleu"
    artifact = "document"
    _score = staticmethod(word_bleu)

    def __init__(self, extractor: ArtifactExtractor) -> None:
        self.extractor = extractor

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        if task.reference is None:
            return Score.unscored("no_reference")
        extraction = await self.extractor.extract(conversation, task)
        if extraction.text is None:
            return missing_artifact_score(extraction)
        return Score(
            value=self._score(extraction.text, task.reference),
            raw=extraction.raw,
            detail={"extracted": extraction.text, "extraction_method": extraction.method},
        )


class BleuChar(Bleu):
    """Character BLEU, only for reproducing the original CollabLLM code's numbers."""

    name = "bleu_char"
    _score = staticmethod(char_bleu)
