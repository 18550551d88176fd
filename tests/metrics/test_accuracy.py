"""Answer accuracy: many notations of the same answer, wrong answers, unparsable answers and the
judge fallback, and answers that try to attack the parser."""

import time

import pytest

from collabrl.backends.errors import TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.metrics.accuracy import AnswerAccuracy, answers_match, latex_to_python
from collabrl.metrics.extraction import ArtifactExtractor
from collabrl.types import Conversation, Task

CONVERSATION = Conversation.of(("user", "What is half of one?"), ("assistant", "It is 1/2."))


def task(reference="0.5"):
    return Task(
        id="m",
        description="solve a math problem",
        intent="What is half of one?",
        artifact="answer",
        reference=reference,
    )


def accuracy(extracted, judge_replies=None):
    extractor = ArtifactExtractor(
        ScriptedBackend([f"<<<ARTIFACT $call_id>>>\n{extracted}\n<<<END ARTIFACT $call_id>>>"])
    )
    judge = None if judge_replies is None else ScriptedBackend(judge_replies)
    return AnswerAccuracy(extractor, judge), judge


@pytest.mark.parametrize(
    "answer, reference",
    [
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("1/2", "0.5"),
        ("\\dfrac12", "\\frac{1}{2}"),
        ("-\\frac12", "-0.5"),
        ("50%", "0.5"),  # a percentage matches its value...
        ("50\\%", "50"),  # ...and its number without the sign (MATH writes both)
        ("x = 3", "3"),
        ("$x=3$", "3"),
        ("The final answer is 7.", "7"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"),
        ("3\\sqrt{2}", "\\sqrt{18}"),
        ("\\sqrt[3]{8}", "2"),
        ("(1, 2)", "(1,2)"),
        ("\\left( 3, 4 \\right)", "(3,4)"),
        ("[1, 2)", "[1,2)"),
        ("3, 2", "2, 3"),  # bare lists of solutions: any order
        ("x=2 \\text{ or } x=3", "\\{3, 2\\}"),
        ("2\\frac{1}{2}", "5/2"),  # mixed number
        ("10,000", "10000"),
        ("\\$10.00", "10"),
        ("30^\\circ", "30"),
        ("5\\text{ cm}^2", "5"),
        ("12 meters", "12"),
        ("\\pi r^2", "r^2\\pi"),
        ("2\\pi", "6.283185307179586"),
        ("x^2+2x+1", "(x+1)^2"),
        ("e^{i\\pi}", "-1"),
        ("\\text{Monday}", "Monday"),
        ("(C)", "\\text{(C)}"),
        ("1.5", "\\frac{3}{2}"),
        ("2^{100}", "1267650600228229401496703205376"),
        ("\\frac{\\sqrt{3}}{3}", "1/\\sqrt{3}"),
    ],
)
def test_equal_answers(answer, reference):
    verdict = answers_match(answer, reference)
    assert verdict is not None and verdict[0], verdict


@pytest.mark.parametrize(
    "answer, reference",
    [
        ("4", "5"),
        ("\\frac{3}{4}", "0.7"),
        ("0.333", "\\frac13"),
        ("(2, 1)", "(1, 2)"),
        ("[1, 2)", "(1, 2)"),
        ("\\{1, 2\\}", "(1, 2)"),
        ("1, 2, 3", "1, 2"),
        ("-3", "3"),
        ("\\infty", "-\\infty"),
        ("x^2", "2x"),
    ],
)
def test_unequal_answers(answer, reference):
    assert answers_match(answer, reference) == (False, "sympy")


@pytest.mark.parametrize(
    "answer",
    [
        "Tuesday",
        "__import__('os').system('echo hacked')",
        "x.n",
        "10^{10^{10}}",
        "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
        "\\frac{1}{",
    ],
)
def test_unparsable_or_unsafe_answers_are_not_decided(answer):
    assert answers_match(answer, "3") is None


def test_huge_numbers_are_compared_without_computing_them():
    start = time.perf_counter()
    assert answers_match("(9999^{9999})^{9999}", "1") == (False, "sympy")
    assert answers_match("\\sqrt{10^{9999}}", "10^{4999}\\sqrt{10}")[0]
    assert time.perf_counter() - start < 2


def test_latex_translation():
    assert latex_to_python("\\frac{a}{\\sqrt{b}}^{2}") == "((a)/(sqrt(b)))**(2)"
    assert latex_to_python("2\\cdot\\pi") == "2* pi "


async def test_metric_scores_one_or_zero_with_detail():
    metric, _ = accuracy("\\boxed{\\frac{1}{2}}")
    score = await metric(CONVERSATION, task())
    assert metric.name == "accuracy" and score.value == 1.0
    assert (
        score.detail["method"] == "sympy" and score.detail["extracted"] == "\\boxed{\\frac{1}{2}}"
    )
    assert score.detail["reference"] == "0.5" and len(score.raw) == 1
    assert (await accuracy("0.6")[0](CONVERSATION, task())).value == 0.0
    assert (await accuracy("0.5")[0](CONVERSATION, task())).detail["method"] == "exact"


async def test_no_answer_is_wrong_but_a_failed_extraction_is_unscored():
    extractor = ArtifactExtractor(ScriptedBackend(["NONE"]))
    assert (await AnswerAccuracy(extractor)(CONVERSATION, task())).value == 0.0

    def fail(messages, params, index):
        raise TransientError("down")

    extractor = ArtifactExtractor(ScriptedBackend(reply_fn=fail))
    score = await AnswerAccuracy(extractor)(CONVERSATION, task())
    assert score.value is None and score.reason == "extract_error:transient"


async def test_missing_reference_is_unscored():
    metric, _ = accuracy("3")
    assert (await metric(CONVERSATION, task(reference=None))).reason == "no_reference"


async def test_unparsable_answers_without_a_judge_are_unscored():
    metric, _ = accuracy("Tuesday")
    score = await metric(CONVERSATION, task("Monday"))
    assert score.value is None and score.reason == "answer_unparsable"
    assert score.detail["extracted"] == "Tuesday"


async def test_unparsable_answers_go_to_the_answer_match_judge():
    metric, judge = accuracy("the second weekday", ["Same day.\nGRADE $call_id: CORRECT"])
    score = await metric(CONVERSATION, task("Tuesday"))
    assert score.value == 1.0 and score.detail["method"] == "judge"
    assert score.detail["grade"] == "CORRECT" and len(score.raw) == 2
    prompt, call = judge.calls[0].messages[0].content, score.detail["call_id"]
    assert f"<<<ANSWER {call}>>>\n> the second weekday\n<<<END ANSWER {call}>>>" in prompt
    assert f"<<<REFERENCE {call}>>>\n> Tuesday\n<<<END REFERENCE {call}>>>" in prompt
    metric, judge = accuracy("Wednesday", ["GRADE $call_id: INCORRECT"])
    assert (await metric(CONVERSATION, task("Tuesday"))).value == 0.0


async def test_deterministic_answers_never_call_the_judge():
    metric, judge = accuracy("1/2", ["GRADE $call_id: INCORRECT"])
    assert (await metric(CONVERSATION, task())).value == 1.0 and judge.calls == []


async def test_an_unreadable_judge_leaves_the_answer_unscored():
    metric, judge = accuracy("the second weekday", ["maybe"])
    score = await metric(CONVERSATION, task("Tuesday"))
    assert score.value is None and score.reason == "judge_unparsable" and len(judge.calls) == 3
    assert score.detail["extracted"] == "the second weekday"


def test_the_last_boxed_answer_counts():
    assert answers_match("First \\boxed{3}, no wait: \\boxed {\\frac{1}{2}}", "0.5")[0]
    assert answers_match("\\boxed{\\frac{1}{2}", "0.5") is None  # unbalanced
