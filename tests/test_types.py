"""Types: immutability, the user simulator's role-flipped view, JSON round trips."""

import pytest
from pydantic import ValidationError

from collabrl.types import Completion, Conversation, GenerationParams, Message, Usage


def test_conversation_is_immutable_and_append_returns_new():
    base = Conversation.of(("user", "hi"))
    longer = base.append("assistant", "hello")
    assert len(base) == 1 and len(longer) == 2
    assert longer.last == Message(role="assistant", content="hello")
    with pytest.raises(ValidationError):
        base.messages = ()


def test_prefix_bounds():
    conv = Conversation.of(("user", "a"), ("assistant", "b"), ("user", "c"))
    assert [m.content for m in conv.prefix(2)] == ["a", "b"]
    assert len(conv.prefix(0)) == 0
    with pytest.raises(ValueError, match="outside 0..3"):
        conv.prefix(4)


def test_user_simulator_view_flips_roles_and_drops_system():
    conv = Conversation.of(
        ("system", "You are helpful."), ("user", "I need a poem"), ("assistant", "About what?")
    )
    view = conv.for_user_simulator()
    assert [(m.role, m.content) for m in view] == [
        ("assistant", "I need a poem"),
        ("user", "About what?"),
    ]
    # Flipping twice restores the non-system messages.
    assert view.for_user_simulator() == Conversation(messages=conv.messages[1:])


def test_json_round_trips():
    conv = Conversation.of(("user", "x"), ("assistant", "y"))
    assert Conversation.model_validate_json(conv.model_dump_json()) == conv
    comp = Completion(
        text="t", finish_reason="length", usage=Usage(prompt_tokens=3, completion_tokens=4)
    )
    assert Completion.model_validate_json(comp.model_dump_json()) == comp
    params = GenerationParams(n=3, stop=("\n",), seed=7)
    assert GenerationParams.model_validate_json(params.model_dump_json()) == params


def test_usage_adds_and_completion_finality():
    assert Usage(prompt_tokens=1, completion_tokens=2) + Usage(prompt_tokens=3) == Usage(
        prompt_tokens=4, completion_tokens=2
    )
    assert Completion(text="", finish_reason="stop").is_final
    assert not Completion(text="", finish_reason="incomplete").is_final
    assert not Completion(text="", finish_reason="refusal").is_final
    cut = Completion(text="half a rep", finish_reason="length")
    assert cut.cut and not cut.is_final and cut.is_cacheable
    assert not Completion(text="", finish_reason="incomplete").is_cacheable


def test_sample_seeds_are_distinct_per_index():
    params = GenerationParams(n=3, seed=10, first_sample=2)
    assert [params.sample_seed(i) for i in range(3)] == [12, 13, 14]
    assert GenerationParams().sample_seed(0) is None


def test_invalid_params_rejected():
    with pytest.raises(ValidationError):
        GenerationParams(n=0)
    with pytest.raises(ValidationError):
        Message(role="robot", content="x")
