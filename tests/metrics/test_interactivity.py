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
    [
        ([3], 100.0),
        ([2], -100.0),
        ([1], -300.0),
        ([3, 2], 0.0),
        ([3, 3, 3, 2], 50.0),
        (["3", "3"], 100.0),
        ([3] * 24 + [2], 92.0),
    ],
)
def test_itr_is_the_papers_rescaled_mean(grades, itr):
    assert itr_from_grades(grades) == pytest.approx(itr)


def test_itr_rejects_empty_or_out_of_range_grades():
    with pytest.raises(ValueError, match="at least one"):
        itr_from_grades([])
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        itr_from_grades([4])


@pytest.mark.parametrize(
    "scale, values",
    [("unit", (1.0, 0.5, 0.0)), ("thirds", (1.0, 2 / 3, 1 / 3)), ("itr", (1.0, -1.0, -3.0))],
)
async def test_scale_maps_each_grade_and_keeps_it(conversation, poem_task, scale, values):
    for grade, value in zip(("3", "2", "1"), values):
        metric = InteractivityJudge(ScriptedBackend([f"GRADE $call_id: {grade}"]), scale=scale)
        score = await metric(conversation, poem_task)
        assert score.value == pytest.approx(value) and score.detail["grade"] == grade


async def test_itr_scale_averages_to_the_papers_itr(conversation, poem_task):
    """A mean of the itr-scale values, times 100, is the ITR that eval reports."""
    grades = ["3", "3", "2", "1"]
    values = [
        (
            await InteractivityJudge(ScriptedBackend([f"GRADE $call_id: {g}"]), scale="itr")(
                conversation, poem_task
            )
        ).value
        for g in grades
    ]
    assert 100 * sum(values) / len(values) == pytest.approx(itr_from_grades(grades))


def test_unknown_scale_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unit, thirds, itr.*'percent'"):
        InteractivityJudge(ScriptedBackend(["GRADE $call_id: 3"]), scale="percent")
