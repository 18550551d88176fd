"""Failed items as data: how many failed, why, and one example message per reason.

A run records a failed conversation with a short, stable reason label (``user_error:rejected``,
``policy_error:transient``) that tables can count, and the error's own message, which names the
cause a user can fix (the API-key variable, the server's URL, the HTTP status). ``FailureTally``
keeps both: counts per label, and the first message seen for each, so a run that stops on its
failure rate or in which everything failed can say why in one line.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class FailureTally:
    """Counts of failure reasons, with the first detail message seen for each."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, reason: str, detail: str | None = None) -> None:
        self.reasons[reason] += 1
        if detail and reason not in self.examples:
            self.examples[reason] = detail

    def __len__(self) -> int:
        return sum(self.reasons.values())

    def describe(self, top: int = 3) -> str:
        """``most common reasons: a x3 (first: <message>), b x1``."""
        if not self.reasons:
            return "no failures"
        parts = []
        for reason, count in self.reasons.most_common(top):
            example = self.examples.get(reason)
            parts.append(f"{reason} x{count}" + (f" ({example})" if example else ""))
        return "most common reasons: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"count": len(self), "reasons": dict(self.reasons), "examples": dict(self.examples)}


def all_failed_message(what: str, failed: int, tally: FailureTally) -> str:
    """The one-line message of a run in which every item failed."""
    return (
        f"all {failed} {what} failed; {tally.describe()}. Nothing usable was produced; fix "
        "the cause and rerun (failed items are retried)."
    )
