"""Turn cost: every assistant turn costs the user time.

``-cost * assistant turns``: with a task-outcome metric it makes the reward prefer the shortest
conversation that still reaches the outcome, so a question pays off only when it gets the
answer better (a clarifying question on a request that misses a detail) and is a loss otherwise
(asking back on a complete request). Already a cost: give it a positive weight.
"""

from __future__ import annotations

from collabrl.types import Conversation, Score, Task


class TurnCost:
    """``-cost`` per assistant turn of the conversation."""

    name = "turn_cost"

    def __init__(self, cost: float = 0.05) -> None:
        if not cost >= 0:
            raise ValueError(f"turn_cost cost must be >= 0, not {cost!r}")
        self.cost = float(cost)

    async def __call__(self, conversation: Conversation, task: Task) -> Score:
        turns = len(conversation.turns("assistant"))
        return Score(value=-self.cost * turns, detail={"turns": turns})
