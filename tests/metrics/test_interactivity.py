"""Interactivity: three judge levels mapped to 1 / 0.5 / 0, and the paper's ITR scale."""

import pytest

from collabrl.backends.scripted import ScriptedBackend
from collabrl.metrics.base import Metric
from collabrl.metrics.interactivity import InteractivityJudge, itr_from_grades


@pytest.mark.parametrize("grade, value", [("3", 1.0), ("2", 0.5), ("1", 0.0)])
async def test_levels_map_to_values_and_keep_the_grade(conversation, poem_task, grade, value):
    backend = ScriptedBackend([f"Reasoning.\nGRADE $call_id: {grade}"])
    metric = InteractivityJudge(backend)
    score = await metric(conversation, poem_task)
    assert isinstance(metric, Metric) and metric.name == "interactivity"
    assert score.value == value and score.detail["grade"] == grade


async def test_the_judge_sees_the_task_and_the_quoted_transcript(conversation, poem_task):
    backend = ScriptedBackend(["GRADE $call_id: 2"])
    metric = InteractivityJudge(backend)
    assert (await metric(conversation, poem_task)).value == 0.5
    prompt, call = metric.judge.render(conversation, poem_task)
    assert backend.calls[0].messages[0].content == prompt
    assert "write a short poem" in prompt and "> Autumn rain, four lines." in prompt
    assert prompt.rstrip().endswith(f"GRADE {call}: <3|2|1>")
    assert backend.calls[0].params.temperature == 0


@pytest.mark.parametrize(
    "grades, itr",
    [([3], 100.0), ([2], -100.0), ([1], -300.0), ([3, 2], 0.0), ([3, 3, 3, 2], 50.0),
     (["3", "3"], 100.0), ([3] * 24 + [2], 92.0)],
)
def test_itr_is_the_papers_rescaled_mean(grades, itr):
    assert itr_from_grades(grades) == pytest.approx(itr)


def test_itr_rejects_empty_or_out_of_range_grades():
    with pytest.raises(ValueError, match="at least one"):
        itr_from_grades([])
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        itr_from_grades([4])
