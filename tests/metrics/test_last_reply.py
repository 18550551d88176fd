"""The deterministic last-reply extractor, and task metrics built on it with extractor_role null."""

from __future__ import annotations

import pytest

from collabrl.assembly import metric_builder
from collabrl.backends.stack import Roles
from collabrl.config import MetricSpec, load_config
from collabrl.metrics.extraction import NO_ARTIFACT
from collabrl.metrics.last_reply import LastReplyExtractor, final_answer
from collabrl.types import Conversation, Task


@pytest.mark.parametrize(
    "text, answer",
    [
        ("So we get \\boxed{\\frac{1}{2}} in the end.", "\\frac{1}{2}"),
        ("Step 1 gives 4, so the answer is 12.", "12"),
        ("Answer: **x = 3**", "x = 3"),
        ("We add 2 and 3 and get 5 apples, then 7/2 of them", "7/2"),
        ("I need more details first. What is the range?", None),
    ],
)
def test_final_answer(text, answer):
    assert final_answer(text) == answer


def conv(*replies: str) -> Conversation:
    turns = [pair for r in replies for pair in (("user", "go on"), ("assistant", r))]
    return (
        Conversation.of(("user", "help"), *turns[1:])
        if replies
        else Conversation.of(("user", "help"))
    )


async def test_extracts_by_kind_from_the_last_reply_only():
    extractor = LastReplyExtractor()
    talk = conv("Draft: old text with 1", "Final text.\n```python\ndef f():\n    return 2\n```")
    doc = await extractor.extract(
        talk, Task(id="d", description="", intent="i", artifact="document")
    )
    code = await extractor.extract(talk, Task(id="c", description="", intent="i", artifact="code"))
    answer = await extractor.extract(
        talk, Task(id="a", description="", intent="i", artifact="answer")
    )
    assert doc.text.startswith("Final text.") and doc.method == "last_reply"
    assert code.text == "def f():\n    return 2"
    assert answer.text == "2"  # the last number of the LAST reply, not the draft's 1


async def test_nothing_said_is_no_artifact():
    extractor = LastReplyExtractor()
    task = Task(id="a", description="", intent="i", artifact="answer")
    assert (await extractor.extract(conv(), task)).reason == NO_ARTIFACT
    assert (await extractor.extract(conv("What range do you mean?"), task)).reason == NO_ARTIFACT


async def test_accuracy_and_bleu_with_a_null_extractor_role_make_no_calls():
    config = load_config(None, ["roles.judge={kind: scripted}"])
    async with Roles(config, use_cache=False) as roles:
        build = metric_builder(roles)
        accuracy = build(
            MetricSpec(name="accuracy", options={"extractor_role": None, "judge_role": None}), "x"
        )
        bleu = build(MetricSpec(name="bleu", options={"extractor_role": None}), "x")
        right = await accuracy(
            conv("so the answer is 12."),
            Task(id="a", description="", intent="i", artifact="answer", reference="12"),
        )
        wrong = await accuracy(
            conv("it is 13"),
            Task(id="a", description="", intent="i", artifact="answer", reference="12"),
        )
        same = await bleu(
            conv("the cat sat on the mat"),
            Task(
                id="d",
                description="",
                intent="i",
                artifact="document",
                reference="the cat sat on the mat",
            ),
        )
        assert roles.meter.roles.get("judge") is None or roles.meter.roles["judge"].calls == 0
    assert (right.value, wrong.value) == (1.0, 0.0)
    assert same.value == pytest.approx(1.0)
