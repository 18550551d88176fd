"""``collabrl study analyze``: ratings and time on task per system, with uncertainty and plots.

The unit is a session (one participant with one system). Each finished session gives one value
per final rating (document quality, interaction, engagement); the ratings asked every N turns
give one value per session too, their mean (``turn``), so a long chat does not weigh more than a
short one. Each system's mean comes with a 95% bootstrap interval (``collabrl.stats``, fixed
seed). Systems are compared *paired* over the participants who worked with both, which removes
the between-person spread; a difference whose interval contains 0 is reported as within noise.
Time on task runs from the first view of a session to its submission; only finished sessions
count. Outputs: ``summary.json``, ``summary.md``, ``ratings.png`` (the distribution of every
rating per system, as in the paper's user-study figure) and ``time_on_task.png``.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from collabrl.stats import Estimate, bootstrap_mean, paired_difference
from collabrl.study.db import open_database
from collabrl.study.export import FINAL_KINDS, session_records

KINDS = (*FINAL_KINDS, "turn")
KIND_TITLES = {
    "document": "Document quality",
    "interaction": "Interaction",
    "engagement": "Engagement",
    "turn": "Ratings during the chat (session mean)",
}


def load_records(db_url: str) -> list[dict[str, Any]]:
    engine = open_database(db_url, create=False)
    try:
        with Session(engine) as db:
            return session_records(db)
    finally:
        engine.dispose()


def rating_values(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, float]]]:
    """kind -> system -> participant -> value (one session per participant and system)."""
    values: dict[str, dict[str, dict[int, float]]] = {k: defaultdict(dict) for k in KINDS}
    for r in records:
        for kind, value in r["ratings"].items():
            values[kind][r["system"]][r["participant"]] = float(value)
        if r["turn_ratings"]:
            turn_mean = statistics.fmean(r["turn_ratings"].values())
            values["turn"][r["system"]][r["participant"]] = turn_mean
    return values


def minutes_on_task(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    minutes: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r["seconds_on_task"] is not None:
            minutes[r["system"]].append(r["seconds_on_task"] / 60)
    return minutes


def summarize(records: list[dict[str, Any]], resamples: int = 2000) -> dict[str, Any]:
    """Means with intervals per system and kind, paired differences, time on task, counts."""
    systems = sorted({r["system"] for r in records})
    values = rating_values(records)
    minutes = minutes_on_task(records)

    def estimate(xs) -> dict | None:
        return bootstrap_mean(list(xs), resamples=resamples).to_dict() if xs else None

    paired = []
    for kind, (a, b) in itertools.product(KINDS, itertools.combinations(systems, 2)):
        diff = paired_difference(a, values[kind][a], b, values[kind][b], resamples=resamples)
        if diff is not None:
            paired.append({"kind": kind, **diff.to_dict()})
    return {
        "participants": len({r["participant"] for r in records}),
        "sessions": {
            s: {
                "assigned": sum(r["system"] == s for r in records),
                "finished": len(minutes.get(s, [])),
            }
            for s in systems
        },
        "ratings": {s: {k: estimate(values[k][s].values()) for k in KINDS} for s in systems},
        "minutes_on_task": {s: estimate(minutes.get(s, [])) for s in systems},
        "paired": paired,
    }


def _cell(estimate: dict | None) -> str:
    if estimate is None:
        return "-"
    return f"{Estimate(**estimate).format(2)} (n={estimate['n']})"


def summary_markdown(summary: dict[str, Any]) -> str:
    systems = list(summary["ratings"])
    finished = sum(c["finished"] for c in summary["sessions"].values())
    assigned = sum(c["assigned"] for c in summary["sessions"].values())
    lines = [
        f"# User study: {summary['participants']} participants, "
        f"{finished} of {assigned} sessions finished",
        "",
        "Means with 95% bootstrap intervals; ratings 1-10; n = sessions.",
        "",
        "| system | finished / assigned | "
        + " | ".join(KIND_TITLES[k] for k in KINDS)
        + " | minutes on task |",
        "|---" * (len(KINDS) + 3) + "|",
    ]
    for s in systems:
        counts = summary["sessions"][s]
        cells = [_cell(summary["ratings"][s][k]) for k in KINDS]
        lines.append(
            f"| {s} | {counts['finished']} / {counts['assigned']} | "
            + " | ".join(cells)
            + f" | {_cell(summary['minutes_on_task'][s])} |"
        )
    lines += ["", "## Paired comparisons (participants who worked with both systems)", ""]
    if not summary["paired"]:
        lines.append("No participant has rated two systems yet.")
    else:
        lines += [
            "| comparison | rating | mean difference [95% CI] | n | verdict |",
            "|---|---|---|---|---|",
        ]
        for p in summary["paired"]:
            verdict = (
                "within noise"
                if p["within_noise"]
                else f"{p['a'] if p['mean'] > 0 else p['b']} higher"
            )
            interval = Estimate(p["mean"], p["low"], p["high"], p["n"]).format(2)
            lines.append(
                f"| {p['a']} - {p['b']} | {KIND_TITLES[p['kind']]} | {interval} | "
                f"{p['n']} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def plot_ratings(records: list[dict[str, Any]], path: Path) -> None:
    """One panel per rating: box plot and every value (jittered) per system."""
    values = rating_values(records)
    systems = sorted({r["system"] for r in records})
    fig = Figure(figsize=(4 * len(KINDS), 4), layout="constrained")
    for ax, kind in zip(fig.subplots(1, len(KINDS), squeeze=False)[0], KINDS):
        data = [list(values[kind][s].values()) for s in systems]
        _distribution(ax, data, systems)
        ax.set_title(KIND_TITLES[kind], fontsize=10)
        ax.set_ylim(0.5, 10.5)
        ax.set_yticks(range(1, 11))
    fig.savefig(path, dpi=120)


def plot_time(records: list[dict[str, Any]], path: Path) -> None:
    minutes = minutes_on_task(records)
    systems = sorted({r["system"] for r in records})
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.subplots()
    _distribution(ax, [minutes.get(s, []) for s in systems], systems)
    ax.set_title("Time on task (finished sessions)", fontsize=10)
    ax.set_ylabel("minutes")
    fig.savefig(path, dpi=120)


def _distribution(ax, data: list[list[float]], names: list[str]) -> None:
    positions = range(1, len(names) + 1)
    filled = [(p, d) for p, d in zip(positions, data) if d]
    if filled:
        ax.boxplot([d for _, d in filled], positions=[p for p, _ in filled], widths=0.5)
    for p, d in filled:
        offsets = [((i * 0.37) % 0.3) - 0.15 for i in range(len(d))]  # deterministic jitter
        ax.scatter([p + o for o in offsets], d, s=14, alpha=0.6)
    ax.set_xticks(list(positions), names, rotation=20)


def analyze(db_url: str, out_dir: Path, resamples: int = 2000) -> dict[str, Any]:
    """Write summary.json, summary.md and the plots for the study in ``db_url``."""
    records = load_records(db_url)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, resamples)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.md").write_text(summary_markdown(summary))
    plot_ratings(records, out_dir / "ratings.png")
    plot_time(records, out_dir / "time_on_task.png")
    return summary
