"""The user simulator: prompt and role flip, tolerant parsing, re-ask, termination, health flags."""

import json

import pytest

from collabrl.backends.errors import RateLimitedError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.simulator import (
    UserSimulator,
    health_flags,
    leaked_words,
    parse_plain_reply,
    parse_user_reply,
)
from collabrl.types import Conversation, Task

TASK = Task(
    id="t1",
    description="write a poem",
    intent="Write a four-line poem about autumn leaves falling in the rain.",
)


def as_json(message, terminate=False, thought="hmm"):
    return json.dumps({"thought": thought, "message": message, "terminate": terminate})


@pytest.mark.parametrize(
    "text, expected",
    [
        (as_json("hi"), ("hmm", "hi", False)),
        ("Sure!\n```json\n" + as_json("fenced") + "\n```\nthanks", ("hmm", "fenced", False)),
        ("prose first " + as_json("inline", True) + " trailing prose", ("hmm", "inline", True)),
        (
            '{"message": "braces {inside} strings", "terminate": "true"}',
            ("", "braces {inside} strings", True),
        ),
        ('{"message": "first"} then {"message": "second"}', ("", "second", False)),
        ("no json here", None),
        ('{"thought": "only a thought"}', None),
    ],
)
def test_parse_user_reply(text, expected):
    assert parse_user_reply(text) == expected


def test_prompt_holds_intent_and_flipped_history():
    sim = UserSimulator(ScriptedBackend("x"))
    conv = Conversation.of(("user", "need a poem"), ("assistant", "What topic?"))
    messages = sim.prompt(TASK, conv)
    assert messages[0].role == "system" and TASK.intent in messages[0].content
    assert [(m.role, m.content) for m in messages[1:]] == [
        ("assistant", "need a poem"),
        ("user", "What topic?"),
    ]
    start = sim.prompt(TASK, Conversation())
    assert start[-1].role == "user" and "first message" in start[-1].content
    with pytest.raises(ValueError):
        sim.prompt(TASK, Conversation.of(("user", "hello")))


async def test_termination_is_a_flag_not_transcript_text():
    sim = UserSimulator(ScriptedBackend(as_json("thanks, bye", terminate=True)))
    turn = await sim.next_turn(TASK, Conversation.of(("user", "a"), ("assistant", "b")))
    assert turn.terminated and turn.message == "thanks, bye" and turn.failure is None


async def test_bounded_reask_then_success_and_failure():
    backend = ScriptedBackend(["not json", as_json("ok now")])
    turn = await UserSimulator(backend, max_reasks=2).next_turn(TASK, Conversation())
    assert turn.message == "ok now" and len(turn.raw) == 2
    reask = backend.calls[1].messages
    assert reask[-2].content == "not json" and "JSON object" in reask[-1].content

    always_bad = ScriptedBackend(["nope"])
    turn = await UserSimulator(always_bad, max_reasks=2).next_turn(TASK, Conversation())
    assert turn.failure == "user_unparsable" and len(always_bad.calls) == 3 and turn.message == ""


async def test_empty_message_without_termination_is_reasked():
    backend = ScriptedBackend([as_json(""), as_json("real message")])
    turn = await UserSimulator(backend).next_turn(TASK, Conversation())
    assert turn.message == "real message"


async def test_backend_failure_is_recorded_not_raised():
    def fail(m, p, i):
        raise RateLimitedError("slow down", status=429)

    turn = await UserSimulator(ScriptedBackend(reply_fn=fail)).next_turn(TASK, Conversation())
    assert turn.failure == "user_error:rate_limited:429"


async def test_sample_index_reaches_the_backend():
    backend = ScriptedBackend(reply_fn=lambda m, p, i: as_json(f"sample {i}"))
    turn = await UserSimulator(backend).next_turn(TASK, Conversation(), sample_index=4)
    assert turn.message == "sample 4"


def test_health_flags_fire_on_crafted_messages():
    assert health_flags("", False, TASK.intent) == ("empty",)
    assert health_flags("", True, TASK.intent) == ()
    assert "role_inversion" in health_flags(
        "Sure! I'd be happy to help you with that.", False, TASK.intent
    )
    assert "role_inversion" in health_flags("Here is the solution: x=2", False, TASK.intent)
    leak = "ok so: write a four-line poem about autumn leaves falling in the rain."
    assert "intent_leak" in health_flags(leak, False, TASK.intent)
    assert (
        health_flags("can you help me with a poem? something about fall", False, TASK.intent) == ()
    )


def test_leaked_words_counts_the_longest_shared_run():
    assert leaked_words("a b c d", "x b c d y") == 3
    assert leaked_words("nothing shared", "at all") == 0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Can you help me with a poem?", ("", "Can you help me with a poem?", False)),
        ('User: "make it about rain"', ("", "make it about rain", False)),
        ("**Me:** shorter please", ("", "shorter please", False)),
        ("Perfect, thanks! [END] extra words", ("", "Perfect, thanks!", True)),
        ("User: I need a poem\nAssistant: Sure, here it is", ("", "I need a poem", False)),
        ("shorter please\n**AI:** ok [END]", ("", "shorter please", False)),
        ("Assistant: Here is your poem.", None),
        ("[END]", ("", "", True)),
        ("  \n ", None),
        ('""', None),
    ],
)
def test_parse_plain_reply(text, expected):
    assert parse_plain_reply(text) == expected


async def test_plain_format_prompt_reask_and_termination():
    backend = ScriptedBackend(["   ", "about autumn, please", "lovely [END]"])
    sim = UserSimulator(backend, reply_format="plain")
    system = sim.prompt(TASK, Conversation())[0].content
    assert "[END]" in system and "JSON" not in system and "$answer_format" not in system
    turn = await sim.next_turn(TASK, Conversation())
    assert turn.message == "about autumn, please" and len(turn.raw) == 2
    assert "[END]" in backend.calls[1].messages[-1].content  # the plain re-ask, not the JSON one
    turn = await sim.next_turn(TASK, Conversation.of(("user", "a"), ("assistant", "b")))
    assert turn.terminated and turn.message == "lovely" and turn.failure is None


def test_json_format_prompt_asks_for_json():
    system = UserSimulator(ScriptedBackend("x")).prompt(TASK, Conversation())[0].content
    assert '"terminate"' in system and "[END]" not in system
