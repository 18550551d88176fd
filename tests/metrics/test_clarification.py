"""detail_success and turn_cost: the clarify-chat outcome and the cost of every turn."""

import pytest

from collabrl.metrics.base import applies_to
from collabrl.metrics.clarification import DetailSuccess, asks_question, mentions
from collabrl.metrics.registry import build_metric
from collabrl.metrics.turn_cost import TurnCost
from collabrl.types import Conversation, Task

TASK = Task(
    id="t", description="d", intent="Write a note to Maya.", metadata={"detail_keywords": ["Maya"]}
)


def chat(*replies):
    conversation = Conversation()
    for reply in replies:
        conversation = conversation.append("user", "hi").append("assistant", reply)
    return conversation


def test_whole_words_in_any_case_count_and_parts_of_words_do_not():
    assert mentions("Dear MAYA, happy birthday", "Maya")
    assert not mentions("Mayan ruins", "Maya") and not mentions("Tomaya", "Maya")
    assert mentions("See you on friday.", "Friday") and mentions("Dear Mr. Alvarez.", "alvarez")
    assert asks_question("Who is it for?") and not asks_question("Here it is.")


async def test_success_is_the_final_reply_using_the_detail():
    metric = DetailSuccess()
    assert (await metric(chat("Who is it for?", "Dear Maya, ..."), TASK)).value == 1.0
    assert (
        await metric(chat("Dear Maya, ...", "Anything else?"), TASK)
    ).value == 0.0  # not the last
    assert (await metric(Conversation(), TASK)).value == 0.0


async def test_a_task_without_keywords_is_unscored_not_zero():
    score = await DetailSuccess()(chat("Hello"), Task(id="x", description="d", intent="i"))
    assert not score.scored and score.reason == "no_detail_keywords"


def test_eval_picks_it_only_for_tasks_without_an_artifact():
    assert applies_to(DetailSuccess(), TASK)
    assert not applies_to(DetailSuccess(), TASK.model_copy(update={"artifact": "document"}))


async def test_turn_cost_counts_assistant_turns():
    score = await TurnCost(0.05)(chat("a?", "b", "c"), TASK)
    assert score.value == pytest.approx(-0.15) and score.detail["turns"] == 3
    with pytest.raises(ValueError, match="cost"):
        TurnCost(-1)


def test_the_registry_builds_both_with_their_options():
    def no_backend(role):
        raise AssertionError("needs no model")

    built = build_metric("turn_cost", {"cost": 0.1}, backends=no_backend, extractor_for=no_backend)
    assert isinstance(built, TurnCost) and built.cost == 0.1
    assert isinstance(
        build_metric("detail_success", {}, backends=no_backend, extractor_for=no_backend),
        DetailSuccess,
    )
