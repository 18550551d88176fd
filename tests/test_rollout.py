"""Conversations and forward sampling: turn counting, termination, independent futures."""

import json

import pytest

from collabrl.backends.errors import TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.rollout import Assistant, ForwardSampler, continue_conversation, run_conversation
from collabrl.simulator import UserSimulator
from collabrl.types import Conversation, Task

TASK = Task(id="t", description="chat", intent="Tell me a joke about cats.")


def user_backend(terminate_after=None):
    """A simulated user whose k-th message (by sample index) reads 'u<k> s<index>'."""

    def reply(messages, params, index):
        said = sum(1 for m in messages if m.role == "assistant") + 1
        done = terminate_after is not None and said > terminate_after
        return json.dumps({"thought": "", "message": f"u{said} s{index}", "terminate": done})

    return ScriptedBackend(reply_fn=reply)


def policy_backend():
    def reply(messages, params, index):
        return f"a{sum(1 for m in messages if m.role == 'assistant') + 1} s{index}"

    return ScriptedBackend(reply_fn=reply)


async def test_run_conversation_stops_at_turn_limit():
    run = await run_conversation(
        TASK, Assistant(policy_backend()), UserSimulator(user_backend()), max_turns=3
    )
    assert run.ended == "turn_limit"
    assert [m.role for m in run.conversation] == ["user", "assistant"] * 3
    assert run.conversation.messages[-1].content == "a3 s0"


async def test_user_termination_ends_without_a_goodbye_in_the_transcript():
    run = await run_conversation(
        TASK, Assistant(policy_backend()), UserSimulator(user_backend(2)), max_turns=5
    )
    assert run.ended == "user_terminated"
    assert len(run.conversation) == 4 and run.closing_message == "u3 s0"
    assert run.conversation.last.role == "assistant"


async def test_policy_system_prompt_is_sent_but_not_in_the_transcript():
    backend = policy_backend()
    run = await run_conversation(
        TASK,
        Assistant(backend, system_prompt="Ask questions."),
        UserSimulator(user_backend()),
        max_turns=1,
    )
    assert backend.calls[0].messages[0].content == "Ask questions."
    assert all(m.role != "system" for m in run.conversation)


async def test_policy_failure_is_recorded():
    def fail(m, p, i):
        raise TransientError("down", status=503)

    run = await run_conversation(
        TASK, Assistant(ScriptedBackend(reply_fn=fail)), UserSimulator(user_backend()), max_turns=2
    )
    assert run.failed and run.ended == "policy_error" and run.error == "policy_error:transient:503"
    assert len(run.conversation) == 1


async def test_usage_and_flags_are_accumulated():
    run = await run_conversation(
        TASK, Assistant(policy_backend()), UserSimulator(user_backend()), max_turns=2
    )
    assert run.policy_usage.completion_tokens == 4  # "a1 s0", "a2 s0": two words each
    assert run.user_usage.completion_tokens > 0


@pytest.mark.parametrize("window", [0, 1, 2, 3])
async def test_window_counts_turn_pairs_not_messages(window):
    prefix = Conversation.of(("user", "hi"), ("assistant", "candidate"))
    sampler = ForwardSampler(
        UserSimulator(user_backend()), Assistant(policy_backend()), samples=2, window=window
    )
    futures = await sampler.sample(TASK, prefix)
    assert len(futures) == (1 if window == 0 else 2)
    for future in futures:
        assert len(future.added) == 2 * window
        assert [m.role for m in future.added] == ["user", "assistant"] * window
        assert future.conversation.prefix(2) == prefix


async def test_futures_are_independent_draws():
    prefix = Conversation.of(("user", "hi"), ("assistant", "candidate"))
    sampler = ForwardSampler(
        UserSimulator(user_backend()), Assistant(policy_backend()), samples=3, window=2
    )
    futures = await sampler.sample(TASK, prefix)
    assert [f.sample_index for f in futures] == [0, 1, 2]
    assert len({f.added for f in futures}) == 3
    assert futures[1].added.messages[0].content == "u2 s1"


async def test_forward_sampling_needs_a_candidate_at_the_end():
    sampler = ForwardSampler(UserSimulator(user_backend()), Assistant(policy_backend()))
    with pytest.raises(ValueError, match="after an assistant reply"):
        await sampler.sample(TASK, Conversation.of(("user", "hi")))


async def test_continue_from_the_middle_of_a_conversation():
    start = Conversation.of(("user", "hi"), ("assistant", "hello"), ("user", "more"))
    run = await continue_conversation(
        TASK,
        start,
        policy=Assistant(policy_backend()),
        user=UserSimulator(user_backend()),
        assistant_turns=1,
    )
    assert run.added.messages[0].role == "assistant" and len(run.added) == 1
