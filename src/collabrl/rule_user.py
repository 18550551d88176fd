"""A rule-based user: holds back one detail and gives it only when the assistant asks.

A deterministic stand-in for the LLM user simulator, for tasks whose whole point is one missing
detail (``clarify-chat``), and for checking the method where a small model cannot play the user.
It works on any task whose metadata carries these fields:

- ``opening``: the first user message (the request without the detail);
- ``detail``: the message that gives the detail;
- ``detail_keywords``: the word(s) a reply must use to count as using the detail.

The rules, in order, on the assistant's last reply:

1. no reply yet: open with ``opening``;
2. the reply uses every detail keyword (whole word, any case): end the conversation, satisfied;
3. the reply contains a '?' (any question counts, the rule cannot tell a good one): give ``detail``;
4. otherwise a non-committal answer ("Hmm, okay."), which reveals nothing; which one depends only
   on ``sample_index`` and the turn, so the user is deterministic given the sample index.

A task without those fields gets a ``user_missing_fields`` failure (recorded, never scored).
Select it with ``user.kind: rule``; it needs no model and no role.
"""

from __future__ import annotations

from collabrl.metrics.clarification import (
    KEYWORDS_FIELD,
    asks_question,
    detail_keywords,
    uses_detail,
)
from collabrl.simulator import UserTurn
from collabrl.types import Conversation, Task

NON_COMMITTAL = ("Hmm, okay.", "Sure, go ahead.", "Okay, whatever you think.", "Fine, sounds good.")
THANKS = "Thanks, that is what I wanted."
FIELDS = ("opening", "detail", KEYWORDS_FIELD)


class RuleUser:
    """The user of the rules above; same interface as ``UserSimulator``."""

    async def next_turn(
        self, task: Task, conversation: Conversation, sample_index: int = 0
    ) -> UserTurn:
        missing = [f for f in FIELDS if not task.metadata.get(f)]
        if missing:
            return UserTurn(
                failure="user_missing_fields",
                failure_detail=f"task {task.id}: metadata lacks {', '.join(missing)}",
            )
        replies = conversation.turns("assistant")
        if not replies:
            return UserTurn(message=task.metadata["opening"], thought="open without the detail")
        last = replies[-1].content
        if uses_detail(last, detail_keywords(task)):
            return UserTurn(message=THANKS, thought="the reply uses my detail", terminated=True)
        if asks_question(last):
            return UserTurn(message=task.metadata["detail"], thought="asked: give the detail")
        message = NON_COMMITTAL[(sample_index + len(replies)) % len(NON_COMMITTAL)]
        return UserTurn(message=message, thought="not asked: reveal nothing")
