"""The rule-based user: opens, gives the detail only when asked, ends once the detail is used."""

import pytest

from collabrl.assembly import build_simulator
from collabrl.backends.scripted import ScriptedBackend
from collabrl.backends.stack import Roles
from collabrl.config import ConfigError, load_config
from collabrl.rollout import Assistant, run_conversation
from collabrl.rule_user import NON_COMMITTAL, RuleUser
from collabrl.simulator import UserSimulator, UserTurn
from collabrl.tasks.registry import load_task_set
from collabrl.types import Conversation, GenerationParams, Task

# any task works, not only clarify-chat: only these metadata fields matter
TASK = Task(
    id="poem",
    description="write a poem",
    intent="A poem about my cat Biscuit.",
    metadata={
        "opening": "Write a poem about my cat.",
        "detail": "She is called Biscuit.",
        "detail_keywords": ["Biscuit"],
    },
)


def after(*replies: str) -> Conversation:
    conversation = Conversation().append("user", TASK.metadata["opening"])
    for i, reply in enumerate(replies):
        conversation = conversation.append("assistant", reply)
        if i < len(replies) - 1:
            conversation = conversation.append("user", "...")
    return conversation


async def test_each_rule():
    user = RuleUser()
    opening = await user.next_turn(TASK, Conversation())
    assert opening.message == "Write a poem about my cat." and not opening.terminated
    asked = await user.next_turn(TASK, after("What is her name?"))
    assert asked.message == "She is called Biscuit." and not asked.terminated
    guessed = await user.next_turn(TASK, after("Whiskers in the sun."))
    assert guessed.message in NON_COMMITTAL and "Biscuit" not in guessed.message
    done = await user.next_turn(TASK, after("What is her name?", "Oh BISCUIT, queen of naps."))
    assert done.terminated and done.failure is None


async def test_the_non_committal_answer_depends_only_on_the_sample_index_and_turn():
    user = RuleUser()
    first = [(await user.next_turn(TASK, after("Nice."), s)).message for s in range(4)]
    assert first == [(await user.next_turn(TASK, after("Nice."), s)).message for s in range(4)]
    assert len(set(first)) == 4


async def test_a_task_without_the_fields_is_a_recorded_failure():
    turn = await RuleUser().next_turn(Task(id="x", description="d", intent="i"), Conversation())
    assert (
        turn.failure == "user_missing_fields"
        and "opening, detail, detail_keywords" in turn.failure_detail
    )


async def test_a_whole_conversation_asking_first_succeeds_in_two_turns():
    task = load_task_set("clarify-chat", "test", limit=1)[0]
    keyword = task.metadata["detail_keywords"][0]

    def assistant(messages, params, index):  # asks first, then uses what it was told
        return f"Here it is, {keyword}." if keyword in messages[-1].content else "Who is it for?"

    run = await run_conversation(
        task,
        Assistant(ScriptedBackend(reply_fn=assistant), GenerationParams()),
        RuleUser(),
        max_turns=3,
    )
    assert run.ended == "user_terminated" and len(run.conversation.turns("assistant")) == 2


class EchoUser:
    """A user-code simulator for the plugin test."""

    async def next_turn(self, task, conversation, sample_index=0):
        return UserTurn(message=f"plugin {sample_index}")


def make_echo_user(config, roles):
    return EchoUser()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("rule", RuleUser), ("llm", UserSimulator), (f"{__name__}:make_echo_user", EchoUser)],
)
def test_user_kind_picks_the_simulator(kind, expected):
    config = load_config(None, [f"user.kind={kind}", "roles.user={kind: scripted}"])
    assert isinstance(build_simulator(config, Roles(config, use_cache=False)), expected)


def test_an_unknown_user_kind_is_a_config_error_naming_the_known_ones():
    config = load_config(None, ["user.kind=oracle"])
    with pytest.raises(
        ConfigError,
        match=r"user.kind: unknown user simulator 'oracle'; known user simulators: llm, rule",
    ):
        build_simulator(config, Roles(config, use_cache=False))
