"""Shared pieces of the metric tests: a conversation and a task."""

import pytest

from collabrl.types import Conversation, Task


@pytest.fixture
def conversation() -> Conversation:
    return Conversation.of(
        ("system", "Be proactive and ask clarifying questions."),
        ("user", "I need a poem."),
        ("assistant", "Happy to help! What should it be about, and how long?"),
        ("user", "Autumn rain, four lines."),
        (
            "assistant",
            "Grey threads of rain\nstitch the gutters' song;\nleaves drown in the lane,\nthe dusk comes on.",
        ),
    )


@pytest.fixture
def poem_task() -> Task:
    return Task(
        id="poem",
        description="write a short poem",
        intent="Write a four-line poem about autumn rain.",
        artifact="document",
        reference="Grey threads of rain stitch the gutters' song.",
    )
