"""BLEU on words (the metric) and on characters (only to reproduce the original code)."""

import asyncio
import math

import pytest

from collabrl.backends.errors import TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.metrics.bleu import Bleu, BleuChar, char_bleu, word_bleu
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.types import Conversation, Task

DOC = "The rain fell on the quiet town, and the river rose slowly through the night."
CONVERSATION = Conversation.of(("user", "write it"), ("assistant", DOC))


def doc_task(reference=DOC):
    return Task(
        id="d",
        description="write an article",
        intent="An article.",
        artifact="document",
        reference=reference,
    )


def extractor_replying(text):
    return ArtifactExtractor(
        ScriptedBackend([f"<<<ARTIFACT $call_id>>>\n{text}\n<<<END ARTIFACT $call_id>>>"])
    )


def test_identical_text_scores_one_in_both_forms():
    assert word_bleu(DOC, DOC) == pytest.approx(1.0)
    assert char_bleu(DOC, DOC) == pytest.approx(1.0)


def test_word_and_char_bleu_differ_on_a_crafted_pair():
    hypothesis, reference = "the cat sat on the mat", "the cat sat on a mat"
    word, char = word_bleu(hypothesis, reference), char_bleu(hypothesis, reference)
    assert word == pytest.approx(0.5373, abs=1e-3)
    assert char == pytest.approx(0.7739, abs=1e-3)  # NLTK sentence_bleu on the raw strings


def test_char_bleu_counts_spaces_like_the_original_code():
    # 4 of 5 characters, every n-gram matched: only the brevity penalty exp(1 - 5/4) remains.
    # Without the space, "abc" would have no 4-gram and score 0.
    assert char_bleu("a bc", "a bcd") == pytest.approx(math.exp(-0.25))
    assert char_bleu("abc", "abcd") == 0.0


async def test_metrics_score_the_extracted_document():
    extractor = extractor_replying("The rain fell on the town.")
    word = await Bleu(extractor)(CONVERSATION, doc_task())
    char = await BleuChar(extractor)(CONVERSATION, doc_task())
    assert (Bleu.name, BleuChar.name) == ("bleu", "bleu_char")
    assert 0 < word.value < 1 and 0 < char.value < 1 and word.value != char.value
    assert word.detail["extracted"] == "The rain fell on the town." and len(word.raw) == 1


async def test_both_forms_share_one_extraction():
    backend = ScriptedBackend([f"<<<ARTIFACT $call_id>>>\n{DOC}\n<<<END ARTIFACT $call_id>>>"])
    extractor = ArtifactExtractor(backend)
    scores = await asyncio.gather(
        Bleu(extractor)(CONVERSATION, doc_task()), BleuChar(extractor)(CONVERSATION, doc_task())
    )
    assert [s.value for s in scores] == pytest.approx([1.0, 1.0]) and len(backend.calls) == 1


async def test_missing_inputs():
    assert (
        await Bleu(extractor_replying(DOC))(CONVERSATION, doc_task(None))
    ).reason == "no_reference"
    none = await Bleu(ArtifactExtractor(ScriptedBackend(["NONE"])))(CONVERSATION, doc_task())
    assert none.value == 0.0

    def fail(messages, params, index):
        raise TransientError("down")

    failed = await BleuChar(ArtifactExtractor(ScriptedBackend(reply_fn=fail)))(
        CONVERSATION, doc_task()
    )
    assert failed.value is None and failed.reason == "extract_error:transient"
