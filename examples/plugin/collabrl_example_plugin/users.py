"""A user-simulator plugin: a user who states the whole request at once and ends after a reply.

A user plugin (``user.kind``) is called as ``factory(config, roles)`` and returns an object with
``async next_turn(task, conversation, sample_index) -> UserTurn``, the interface of collabrl's
``UserSimulator``; ``roles[name]`` gives a model backend if the user needs one (this one does not).
"""

from __future__ import annotations

from typing import Any

from collabrl.simulator import UserTurn
from collabrl.types import Conversation, Task


class StraightUser:
    """Opens with ``task.intent``; after the assistant's first reply, thanks it and stops."""

    def __init__(self, config: Any, roles: Any) -> None:
        self.config = config

    async def next_turn(
        self, task: Task, conversation: Conversation, sample_index: int = 0
    ) -> UserTurn:
        if not any(message.role == "assistant" for message in conversation):
            return UserTurn(message=task.intent)
        return UserTurn(message="Thanks, that will do.", terminated=True)
