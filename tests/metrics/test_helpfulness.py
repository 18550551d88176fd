"""Helpfulness: a 1-10 judge grade mapped to [0, 1]."""

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.metrics.helpfulness import HelpfulnessJudge


@pytest.mark.parametrize("grade, value", [("10", 1.0), ("1", 0.0), ("4", 1 / 3), ("7", 2 / 3)])
async def test_grades_map_into_unit_interval(conversation, poem_task, grade, value):
    backend = ScriptedBackend([f"GRADE $call_id: {grade}"])
    score = await HelpfulnessJudge(backend)(conversation, poem_task)
    assert score.value == pytest.approx(value) and score.detail["grade"] == grade


async def test_the_judge_sees_the_hidden_intent_quoted(conversation, poem_task):
    backend = ScriptedBackend(["GRADE $call_id: 5"])
    metric = HelpfulnessJudge(backend)
    score = await metric(conversation, poem_task)
    prompt = backend.calls[0].messages[0].content
    assert metric.name == "helpfulness"
    call = score.detail["call_id"]
    intent = "> Write a four-line poem about autumn rain."
    assert f"<<<INTENT {call}>>>\n{intent}\n<<<END INTENT {call}>>>" in prompt


async def test_out_of_range_grade_is_reasked_then_unscored(conversation, poem_task):
    backend = ScriptedBackend(["GRADE $call_id: 11"])
    score = await HelpfulnessJudge(backend, max_reasks=1)(conversation, poem_task)
    assert score.reason == "judge_unparsable" and len(backend.calls) == 2
