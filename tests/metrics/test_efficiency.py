"""Token efficiency: assistant tokens only, the paper's clamped penalty and the code's kilotokens."""

import pytest

from collabrl.metrics.efficiency import TokenEfficiency, approx_token_count
from collabrl.types import Conversation, Task

TASK = Task(id="t", description="d", intent="i")
CONVERSATION = Conversation.of(
    ("system", "a very long system prompt " * 50),
    ("user", "a very long user message " * 50),
    ("assistant", "Hello, world!"),  # 4 tokens
    ("user", "more"),
    ("assistant", "It costs 12345 dollars."),  # It costs 123 45 dollars . = 6
)


@pytest.mark.parametrize(
    "text, count",
    [("Hello, world!", 4), ("12345", 2), ("don't", 3), ("snake_case", 3), ("", 0), ("日本語", 1)],
)
def test_approximate_token_count(text, count):
    assert approx_token_count(text) == count


async def test_penalty_counts_only_assistant_tokens():
    score = await TokenEfficiency()(CONVERSATION, TASK)
    assert score.detail["tokens"] == 10
    assert score.value == pytest.approx(-10 * 5e-4)


async def test_penalty_is_clamped_at_minus_one():
    score = await TokenEfficiency(lam=0.5)(CONVERSATION, TASK)
    assert score.value == -1.0 and score.detail["tokens"] == 10


async def test_kilotokens_form_with_a_custom_counter():
    metric = TokenEfficiency(form="kilotokens", count_tokens=lambda s: len(s.split()))
    score = await metric(CONVERSATION, TASK)
    assert metric.name == "token_efficiency"
    assert score.detail == {"tokens": 6, "form": "kilotokens"} and score.value == 0.006


def test_settings_are_validated():
    with pytest.raises(ValueError, match="form"):
        TokenEfficiency(form="linear")
    with pytest.raises(ValueError, match="lam"):
        TokenEfficiency(lam=0)
