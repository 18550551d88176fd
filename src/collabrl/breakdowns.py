"""Breakdowns of an evaluation summary: every figure per simulated persona, and pass^k.

A mean task score hides two things a collaborator is judged on: whom it serves well (a system
that shines with forthcoming experts and fails impatient novices) and how reliably (a system
that solves a task on one seed out of three). The per-persona breakdown answers the first, with
the same figures and bootstrap intervals as the main table. pass^k answers the second, as
tau2-bench defines it: a conversation succeeds when its task score is ``>= threshold``
(``eval.success_threshold``); for a task with n scored seeds of which c succeed, pass^k is
C(c, k) / C(n, k), the chance that k seeds drawn from its n all succeed; the system's pass^k is
its mean over the tasks with at least k scored seeds (their number is reported with it). With
n = k that is the share of tasks where every seed succeeds; pass^1 is the plain success rate.
Failed conversations and unscored ones are left out, as everywhere in the summary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from math import comb
from typing import Any

FiguresOf = Callable[[list[dict]], dict[str, Any]]
NO_PERSONA = "(none)"
PERSONA_COLUMNS = (
    ("score", "(%)", 1),
    ("satisfied", "satisfied (%)", 1),
    ("turns", "turns", 2),
    ("tokens_k", "tok (k)", 2),
    ("itr", "ITR", 1),
)


def persona_name(record: dict) -> str:
    persona = record.get("persona")
    return persona["name"] if persona else NO_PERSONA


def persona_breakdown(rows: list[dict], systems: list[str], figures: FiguresOf) -> dict[str, Any]:
    """{persona: {system: figures}} for the records that carry a persona ({} when none does);
    ``figures`` is the main table's per-system summary, so the numbers mean the same."""
    if not any(r.get("persona") for r in rows):
        return {}
    by_persona: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_persona[persona_name(r)].append(r)
    return {
        name: {s: figures(rs) for s in systems if (rs := [r for r in group if r["system"] == s])}
        for name, group in sorted(by_persona.items())
    }


def pass_hat_k(outcomes: list[bool], k: int) -> float | None:
    """pass^k of one task from its seeds' outcomes: C(c, k) / C(n, k); None when n < k."""
    n, c = len(outcomes), sum(outcomes)
    return comb(c, k) / comb(n, k) if n >= k else None


def reliability(
    rows: list[dict], systems: list[str], seeds: int, threshold: float
) -> dict[str, Any]:
    """Per system: pass^1 .. pass^seeds in percent, each with the number of tasks behind it."""
    out: dict[str, Any] = {}
    for system in systems:
        by_task: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            if r["system"] == system and not r.get("error") and r["score"] is not None:
                by_task[r["task_id"]].append(r["score"] >= threshold)
        if not by_task:
            continue
        out[system] = {
            "tasks": len(by_task),
            "pass_k": [_pass_k(by_task, k) for k in range(1, seeds + 1)],
        }
    return {"threshold": threshold, "seeds": seeds, "systems": out} if out else {}


def _pass_k(by_task: dict[str, list[bool]], k: int) -> dict[str, Any]:
    values = [v for outcomes in by_task.values() if (v := pass_hat_k(outcomes, k)) is not None]
    return {
        "k": k,
        "value": 100 * sum(values) / len(values) if values else None,
        "tasks": len(values),
    }


def reliability_markdown(label: str, body: dict[str, Any], systems: list[str]) -> list[str]:
    """Lines of the pass^k table of one summary group, next to each system's mean score."""
    block = body.get("reliability")
    if not block:
        return []
    ks = range(1, block["seeds"] + 1)
    lines = [
        "",
        f"{label}, reliability across seeds (success: score >= {block['threshold']:g}):",
        "",
        "| System | mean (%) | " + " | ".join(f"pass^{k} (%)" for k in ks) + " | tasks |",
        "|" + "---|" * (block["seeds"] + 3),
    ]
    for system in systems:
        entry = block["systems"].get(system)
        if entry is None:
            continue
        mean = (body["systems"].get(system, {}).get("score") or {}).get("mean")
        cells = [_number(p["value"]) for p in entry["pass_k"]]
        lines.append(
            f"| {system} | {_number(mean)} | " + " | ".join(cells) + f" | {entry['tasks']} |"
        )
    return lines


def persona_markdown(
    label: str,
    body: dict[str, Any],
    systems: list[str],
    interval: Callable[[dict | None, int], str],
) -> list[str]:
    """Lines of the per-persona table of one summary group (none when no record has a persona)."""
    personas = body.get("personas")
    if not personas:
        return []
    header = ["Persona", "System", *(col for _, col, _ in PERSONA_COLUMNS), "n"]
    lines = [
        "",
        f"{label}, per persona of the simulated user:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, per_system in personas.items():
        for system in systems:
            figures = per_system.get(system)
            if figures is None:
                continue
            cells = [interval(figures.get(figure), digits) for figure, _, digits in PERSONA_COLUMNS]
            lines.append(
                f"| {name} | {system} | " + " | ".join(cells) + f" | {figures['conversations']} |"
            )
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
