"""Conversations between a policy and the user simulator, and forward sampling of futures.

One loop, ``continue_conversation``, plays user and assistant turns from any starting point
until the user ends the chat, a turn budget is spent, or a call fails. ``run_conversation``
starts it from nothing; ``ForwardSampler`` starts it S times, concurrently, from a prefix that
ends with a candidate reply, with a budget of w more turn pairs (user, assistant). Future ``j``
uses sample index ``j`` in every call, so the S futures are independent draws (and each one is
reproducible from the cache). Every run records its transcript, usage and why it ended, and
flags every assistant reply the length limit cut (``policy_cut@<message index>``): what a cut
means is the caller's decision (the reward leaves such futures unscored by default; evaluation
counts them against the system that wrote them).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict

from collabrl.backends.base import Backend
from collabrl.backends.errors import BackendError
from collabrl.simulator import UserSimulator
from collabrl.types import Conversation, GenerationParams, Message, Task, Usage

FAILED_ENDS = ("user_error", "policy_error")  # how a failed rollout ended (not scored, retried)
CUT_FLAG = "policy_cut"  # an assistant reply the length limit cut, flagged at its message index
EndReason = Literal["user_terminated", "turn_limit", "user_error", "policy_error"]


class Rollout(BaseModel):
    """A conversation played out from ``start`` messages on, and how it ended."""

    model_config = ConfigDict(frozen=True)

    conversation: Conversation
    start: int = 0
    ended: EndReason
    error: str | None = None
    error_detail: str | None = None
    policy_usage: Usage = Usage()
    user_usage: Usage = Usage()
    flags: tuple[str, ...] = ()
    closing_message: str | None = None
    sample_index: int = 0

    @property
    def failed(self) -> bool:
        return self.ended in FAILED_ENDS

    @property
    def cut_replies(self) -> int:
        """Assistant replies of this rollout that the length limit cut (flag ``policy_cut@i``)."""
        return sum(flag.startswith(CUT_FLAG + "@") for flag in self.flags)

    @property
    def added(self) -> Conversation:
        """The messages this rollout added after its starting point."""
        return Conversation(messages=self.conversation.messages[self.start :])


class Assistant:
    """An assistant: a backend, its sampling settings, and an optional system prompt."""

    def __init__(
        self,
        backend: Backend,
        params: GenerationParams | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.backend = backend
        self.params = params or GenerationParams()
        self.system_prompt = system_prompt

    def messages(self, conversation: Conversation) -> list[Message]:
        system = [Message(role="system", content=self.system_prompt)] if self.system_prompt else []
        return [*system, *conversation.messages]

    async def reply(self, conversation: Conversation, sample_index: int = 0, n: int = 1):
        params = self.params.model_copy(update={"n": n, "first_sample": sample_index})
        return await self.backend.generate(self.messages(conversation), params)


async def continue_conversation(
    task: Task,
    conversation: Conversation,
    *,
    policy: Assistant,
    user: UserSimulator,
    assistant_turns: int,
    sample_index: int = 0,
) -> Rollout:
    """Alternate user and assistant turns until termination or ``assistant_turns`` replies."""
    state = {"policy": Usage(), "user": Usage()}
    flags: list[str] = []
    start = len(conversation)
    turns_left = assistant_turns

    def done(
        ended: EndReason,
        error: str | None = None,
        closing: str | None = None,
        detail: str | None = None,
    ) -> Rollout:
        return Rollout(
            conversation=conversation,
            start=start,
            ended=ended,
            error=error,
            error_detail=detail,
            policy_usage=state["policy"],
            user_usage=state["user"],
            flags=tuple(flags),
            closing_message=closing,
            sample_index=sample_index,
        )

    while True:
        if conversation.last is None or conversation.last.role == "assistant":
            if turns_left <= 0:
                return done("turn_limit")
            turn = await user.next_turn(task, conversation, sample_index)
            state["user"] += turn.usage
            flags.extend(f"{flag}@{len(conversation)}" for flag in turn.flags)
            if turn.failure:
                return done("user_error", turn.failure, detail=turn.failure_detail)
            if turn.terminated:
                return done("user_terminated", closing=turn.message or None)
            conversation = conversation.append("user", turn.message)
        try:
            [completion] = await policy.reply(conversation, sample_index)
        except BackendError as error:
            return done("policy_error", f"policy_error:{error.reason}", detail=str(error))
        state["policy"] += completion.usage
        if completion.cut:
            flags.append(f"{CUT_FLAG}@{len(conversation)}")
        conversation = conversation.append("assistant", completion.text)
        turns_left -= 1


async def run_conversation(
    task: Task, policy: Assistant, user: UserSimulator, max_turns: int, sample_index: int = 0
) -> Rollout:
    """A whole conversation from the first user message, at most ``max_turns`` assistant turns."""
    return await continue_conversation(
        task,
        Conversation(),
        policy=policy,
        user=user,
        assistant_turns=max_turns,
        sample_index=sample_index,
    )


class ForwardSampler:
    """Samples S possible futures of ``window`` more turn pairs after a candidate reply."""

    def __init__(
        self, user: UserSimulator, assistant: Assistant, *, samples: int = 3, window: int = 2
    ):
        if samples < 1 or window < 0:
            raise ValueError("ForwardSampler needs samples >= 1 and window >= 0")
        self.user = user
        self.assistant = assistant
        self.samples = samples
        self.window = window

    @property
    def future_count(self) -> int:
        """How many futures a reply gets: S, or 1 with window 0 (the conversation itself is
        the only future: there is nothing to sample)."""
        return 1 if self.window == 0 else self.samples

    async def sample(self, task: Task, conversation: Conversation) -> list[Rollout]:
        """S futures of ``conversation``, which must end with the candidate assistant reply."""
        if conversation.last is None or conversation.last.role != "assistant":
            raise ValueError("forward sampling starts after an assistant reply (the candidate)")
        return list(
            await asyncio.gather(
                *(self.sample_one(task, conversation, j) for j in range(self.future_count))
            )
        )

    async def sample_one(self, task: Task, conversation: Conversation, index: int) -> Rollout:
        """Future number ``index`` (its sample index in every call) of ``conversation``."""
        if self.window == 0:
            return Rollout(conversation=conversation, start=len(conversation), ended="turn_limit")
        return await continue_conversation(
            task,
            conversation,
            policy=self.assistant,
            user=self.user,
            assistant_turns=self.window,
            sample_index=index,
        )
