"""Blind, balanced assignment of participants to systems, orders and tasks.

Participant number ``i`` (0, 1, 2, ... in the order links were created) gets row ``i mod R`` of
a Williams balanced Latin square over the systems (R = k rows for k systems, 2k when k is odd),
and works with the first ``systems_per_participant`` systems of that row, in that order. Over
every R consecutive participants each system is used equally often at each position, and (for
the full row) each system follows every other equally often, which cancels order and carryover
effects in paired comparisons.

Tasks rotate by block: the participants of block ``b = i // R`` start at task ``b`` and take the
next task for each further session, so a participant never sees a task twice (while there are
enough tasks) and, over as many blocks as there are tasks, every system meets every task
equally often. Participants see only a neutral label by position ("Assistant A", "Assistant
B"), never which system they are talking to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Assignment:
    """One session of a participant."""

    position: int
    system: str
    label: str
    task_id: str


def williams_square(k: int) -> list[list[int]]:
    """Rows of a balanced Latin square over ``0..k-1`` (2k rows when k is odd)."""
    if k < 1:
        raise ValueError("need at least one system")
    first, low, high = [0], 1, k - 1
    while len(first) < k:
        first.append(low)
        low += 1
        if len(first) < k:
            first.append(high)
            high -= 1
    rows = [[(x + r) % k for x in first] for r in range(k)]
    if k % 2:
        rows += [row[::-1] for row in rows]
    return rows


def label(position: int) -> str:
    return f"Assistant {chr(ord('A') + position)}"


def assign(
    number: int, systems: Sequence[str], per_participant: int, task_ids: Sequence[str]
) -> list[Assignment]:
    """The sessions of participant ``number``, in the order they are worked on."""
    if not 1 <= per_participant <= len(systems):
        raise ValueError(f"per_participant must be 1..{len(systems)}, got {per_participant}")
    if not task_ids:
        raise ValueError("need at least one task")
    rows = williams_square(len(systems))
    order = rows[number % len(rows)][:per_participant]
    block = number // len(rows)
    return [
        Assignment(
            position, systems[s], label(position), task_ids[(block + position) % len(task_ids)]
        )
        for position, s in enumerate(order)
    ]
