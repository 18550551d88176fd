"""Report data: what a run folder holds, reduced to what the HTML report shows.

The report is one static file, so everything it needs is computed here, once, in Python, where it
can be tested without a browser: the run kind (from the files the folder has), the paper's Table 1
cells and the paired differences (read from ``summary.json``, never recomputed), counts, plot
series, and compact conversation records for the browser. Sampled futures keep only the messages
they added (the prefix is already on the page), which keeps data-engine reports a fraction of the
size of ``turns.jsonl``. A rerun appends newer records for retried items; the report reads the
latest of each. Failed items and replies cut by the length limit are counted, and so are the
candidates whose adaptive sampling stopped early (``settled``) or at ``samples_max``. A run still being written (turn records of a conversation that has no
conversation record yet) shows up as ``unfinished`` rather than being dropped. A conversation
whose simulated user had a persona carries it (its name, a browser filter, and its attributes).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

from collabrl.engine import CONVERSATIONS_FILE, TURNS_FILE
from collabrl.evaluate import FIGURES, KEY, METRIC_LABELS, RECORDS_FILE
from collabrl.records import latest_by, read_jsonl
from collabrl.report.series import histogram, means_by_x
from collabrl.reward import FUTURE_CUT
from collabrl.rollout import CUT_FLAG

SUMMARY_FILE = "summary.json"
FIGURE_LABELS = {
    "score": "Task score (%)",
    "tokens_k": "Assistant tokens (k)",
    "itr": "Interactivity (ITR)",
    "turns": "Turns",
    "satisfied": "Satisfied (%)",
    "asks_first": "First reply asks (%)",
}
# Decimals per figure: percentages and ITR one, small counts two (others: by their size).
FIGURE_DIGITS = {"score": 1, "tokens_k": 2, "itr": 1, "turns": 2, "satisfied": 1, "asks_first": 1}
HEADLINE_FIGURE = "score"  # task success: what the page opens on
TABLE_COLUMNS = [("score", "(%)", 1), ("tokens_k", "tok (k)", 2), ("itr", "ITR", 1)]
RunKind = Literal["eval", "generate"]


class ReportError(ValueError):
    """A folder that is not a run the report can read."""


def run_kind(folder: Path) -> RunKind:
    """``eval`` (summary.json + conversations with a system) or ``generate`` (turns.jsonl)."""
    records = folder / RECORDS_FILE
    if (folder / SUMMARY_FILE).exists() and records.exists():
        first = next(read_jsonl(records), None)
        if first is None or "system" in first:
            return "eval"
    if (folder / TURNS_FILE).exists():
        return "generate"
    raise ReportError(
        f"{folder}: not a run folder (expected summary.json and conversations.jsonl "
        f"from `collabrl eval`, or turns.jsonl from `collabrl generate`)"
    )


def load_run(folder: str | Path) -> dict[str, Any]:
    """Everything the report shows about one run folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such folder")
    kind = run_kind(folder)
    name = "/".join(folder.resolve().parts[-2:])
    body = eval_run(folder) if kind == "eval" else generate_run(folder)
    return {"kind": kind, "name": name, "path": str(folder), "sandbox": _sandbox(folder), **body}


def _sandbox(folder: Path) -> dict[str, Any] | None:
    """The manifest's account of the code sandbox (level, weak isolation opted into), if any."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("sandbox")


# --- evaluation runs -------------------------------------------------------------------------


def eval_run(folder: Path) -> dict[str, Any]:
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    records = list(latest_by(read_jsonl(folder / RECORDS_FILE), *KEY).values())
    systems = eval_systems(summary, records)
    return {
        "systems": systems,
        "table": summary_table(summary, systems),
        "paired": paired_rows(summary),
        "figures": figure_bars(summary, systems),
        "headline": headline(summary, systems),
        "plots": eval_plots([r for r in records if not r.get("error")], systems),
        "counts": eval_counts(records),
        "conversations": [eval_conversation(i, r) for i, r in enumerate(records)],
    }


def eval_systems(summary: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """Systems in config order (the summary keeps it; the baseline first), then any others."""
    seen: dict[str, None] = {}
    for group in summary.values():
        for paired in group["paired"]:
            seen.setdefault(paired["b"], None)
        seen.update(dict.fromkeys(group["systems"]))
    seen.update(dict.fromkeys(r["system"] for r in records))
    return list(seen)


def summary_table(summary: dict[str, Any], systems: list[str]) -> dict[str, Any]:
    """Table 1's shape: per task metric, its value / tokens (k) / ITR per system."""
    groups = list(summary)
    rows = []
    for system in systems:
        cells = []
        for group in groups:
            figures = summary[group]["systems"].get(system, {})
            cells += [
                {
                    "estimate": figures.get(name),
                    "unscored": figures.get(f"{name}_unscored"),
                    "conversations": figures.get("conversations", 0),
                }
                for name, _, _ in TABLE_COLUMNS
            ]
        rows.append({"system": system, "cells": cells})
    return {
        "groups": [{"key": g, "label": METRIC_LABELS.get(g, g)} for g in groups],
        "columns": [
            {"figure": name, "label": label, "digits": digits}
            for name, label, digits in TABLE_COLUMNS
        ],
        "rows": rows,
    }


def paired_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every paired difference, labelled with its task metric and figure."""
    return [
        {
            "group": METRIC_LABELS.get(group, group),
            "label": FIGURE_LABELS.get(d["figure"], d["figure"]),
            **d,
        }
        for group, body in summary.items()
        for d in body["paired"]
    ]


def figure_bars(summary: dict[str, Any], systems: list[str]) -> list[dict[str, Any]]:
    """One bar chart per (task metric, figure): each system's mean with its interval."""
    charts = []
    for group, body in summary.items():
        for figure in FIGURES:
            bars = [
                {"name": s, **body["systems"][s][figure]}
                for s in systems
                if body["systems"].get(s, {}).get(figure)
            ]
            if bars:
                title = f"{METRIC_LABELS.get(group, group)}: {FIGURE_LABELS.get(figure, figure)}"
                charts.append({"title": title, "bars": bars})
    return charts


def headline(summary: dict[str, Any], systems: list[str]) -> list[dict[str, Any]]:
    """Per task metric, the result the report opens on: the headline figure (task success) of
    every system with its 95% interval, and each system's paired difference against the first
    system (``summary.json``'s, with its interval and whether it is within noise)."""
    charts = []
    for group, body in summary.items():
        bars = [
            {"name": s, **body["systems"][s][HEADLINE_FIGURE]}
            for s in systems
            if body["systems"].get(s, {}).get(HEADLINE_FIGURE)
        ]
        if not bars:
            continue
        differences = [d for d in body["paired"] if d["figure"] == HEADLINE_FIGURE]
        charts.append(
            {
                "group": METRIC_LABELS.get(group, group),
                "bars": bars,
                "base": differences[0]["b"] if differences else bars[0]["name"],
                "differences": differences,
            }
        )
    return charts


def eval_plots(records: list[dict[str, Any]], systems: list[str]) -> dict[str, Any]:
    """Task score by conversation length, and distributions of tokens, turns and ITR."""
    by_system = {s: [r for r in records if r["system"] == s] for s in systems}

    def values(get) -> dict[str, list[float]]:
        return {s: [v for v in map(get, rs) if v is not None] for s, rs in by_system.items()}

    return {
        "score_by_turns": means_by_x(
            {s: [(r["turns"], FIGURES["score"](r)) for r in rs] for s, rs in by_system.items()}
        ),
        "tokens": histogram(values(lambda r: r["assistant_tokens"])),
        "turns": histogram(values(FIGURES["turns"])),
        "itr": histogram(values(FIGURES["itr"])),
    }


def eval_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "conversations": len(records),
        "failed": sum(1 for r in records if r.get("error")),
        "failure_reasons": dict(Counter(r["error"] for r in records if r.get("error"))),
        "cut_replies": sum(r.get("cut_replies", 0) for r in records),
        "satisfied": sum(1 for r in records if r["satisfied"]),
        "score_unscored": sum(1 for r in records if r["score"] is None),
        "itr_unscored": sum(1 for r in records if r["itr_grade"] is None),
        "ended": dict(Counter(r["ended"] for r in records)),
        "flags": dict(Counter(f for r in records for f in r.get("flags", []))),
    }


def eval_conversation(index: int, r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": index,
        "task": r["task_id"],
        "system": r["system"],
        "seed": r["seed"],
        "status": "failed" if r.get("error") else "ok",
        "ended": r["ended"],
        "satisfied": r["satisfied"],
        "turns": r["turns"],
        "messages": _messages(r["messages"]),
        "metric": r.get("metric"),
        "score": r["score"],
        "score_reason": r.get("score_reason"),
        "itr": r["itr_grade"],
        "itr_reason": r.get("itr_reason"),
        "tokens": r["assistant_tokens"],
        "error": r.get("error"),
        "flags": r.get("flags", []),
        **persona_fields(r),
    }


def persona_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The simulated user's persona for the browser: its name (a filter) and its attributes."""
    persona = record.get("persona")
    return {"persona": persona["name"] if persona else None, "persona_traits": persona}


# --- data-engine runs ------------------------------------------------------------------------


def generate_run(folder: Path) -> dict[str, Any]:
    turns = {(t["conversation_id"], t["turn"]): t for t in read_jsonl(folder / TURNS_FILE)}
    ordered = sorted(turns.values(), key=lambda t: (t["conversation_id"], t["turn"]))
    convs_path = folder / CONVERSATIONS_FILE
    conversations = (
        list(latest_by(read_jsonl(convs_path), "conversation_id").values())
        if convs_path.exists()
        else []
    )
    return {
        "counts": generate_counts(ordered, conversations),
        "plots": generate_plots(ordered),
        "conversations": generate_conversations(ordered, conversations),
    }


def _chosen_and_rejected(turn: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict]]:
    chosen = turn["chosen"]
    candidates = turn["candidates"]
    rejected = [c for i, c in enumerate(candidates) if i != chosen]
    return (candidates[chosen] if chosen is not None else None), rejected


def generate_counts(turns: list[dict[str, Any]], conversations: list[dict[str, Any]]) -> dict:
    finished = {c["conversation_id"] for c in conversations}
    candidates = [c for t in turns for c in t["candidates"]]
    chosen = [_chosen_and_rejected(t)[0] for t in turns]
    return {
        "conversations": len(finished | {t["conversation_id"] for t in turns}),
        "ok": sum(1 for c in conversations if c["status"] == "ok"),
        "failed": sum(1 for c in conversations if c["status"] == "failed"),
        "unfinished": len({t["conversation_id"] for t in turns} - finished),
        "turns": len(turns),
        "turns_without_choice": sum(1 for c in chosen if c is None),
        "candidates": len(candidates),
        "candidates_unscored": sum(1 for c in candidates if c["mr"] is None),
        "candidates_cut": sum(1 for c in candidates if c.get("cut")),
        "candidates_trimmed": sum(1 for c in candidates if c.get("trimmed")),
        "futures": sum(len(c["sample_rewards"]) for c in candidates),
        "futures_unscored": sum(c["unscored"] for c in candidates),
        "futures_cut": sum(map(_cut_futures, candidates)),
        "sampling_stopped": dict(Counter(c["stopped"] for c in candidates if c.get("stopped"))),
        "candidates_by_source": dict(Counter(c["source"] for c in candidates)),
        "chosen_by_source": dict(Counter(c["source"] for c in chosen if c is not None)),
        "failure_reasons": dict(Counter(c["reason"] for c in conversations if c.get("reason"))),
        "ended": dict(Counter(c["ended"] for c in conversations)),
    }


def _cut_futures(candidate: dict[str, Any]) -> int:
    """Futures of a candidate in which the length limit cut an assistant reply: read from the
    stored futures' flags, or, when futures were not kept, from the unscored ones' reasons."""
    if candidate.get("futures") is None:
        return sum(1 for reason in candidate["reasons"] if reason == FUTURE_CUT)
    return sum(
        1
        for sample in candidate["futures"]
        if any(f.startswith(CUT_FLAG + "@") for f in sample["future"].get("flags", []))
    )


def generate_plots(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """MR of chosen vs rejected replies (distributions, and by turn), the chosen-rejected gap,
    and the chosen replies' per-metric means by turn."""
    chosen_mr, rejected_mr, gaps = [], [], []
    by_turn: dict[str, list[tuple[int, float | None]]] = {"chosen": [], "rejected": []}
    metrics: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
    for t in turns:
        chosen, rejected = _chosen_and_rejected(t)
        scored = [c["mr"] for c in rejected if c["mr"] is not None]
        rejected_mr += scored
        by_turn["rejected"] += [(t["turn"], mr) for mr in scored]
        if chosen is None:
            continue
        chosen_mr.append(chosen["mr"])
        by_turn["chosen"].append((t["turn"], chosen["mr"]))
        if scored:
            gaps.append(chosen["mr"] - min(scored))
        for name, value in chosen["metric_means"].items():
            metrics[name].append((t["turn"], value))
    return {
        "mr": histogram({"chosen": chosen_mr, "rejected": rejected_mr}),
        "gap": histogram({"chosen - lowest rejected": gaps}),
        "mr_by_turn": means_by_x(by_turn),
        "metrics_by_turn": means_by_x(metrics),
    }


def generate_conversations(
    turns: list[dict[str, Any]], conversations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One browser record per conversation, its scored turns attached; unfinished ones last."""
    steps: dict[str, list[dict]] = defaultdict(list)
    for t in turns:
        steps[t["conversation_id"]].append(t)
    out = []
    for c in conversations:
        out.append(_generate_conversation(len(out), c, steps.pop(c["conversation_id"], [])))
    for conversation_id, pending in steps.items():
        last = pending[-1]
        chosen, _ = _chosen_and_rejected(last)
        messages = last["prefix"] + (
            [{"role": "assistant", "content": chosen["text"]}] if chosen else []
        )
        record = {
            "conversation_id": conversation_id,
            "task_id": last["task_id"],
            "status": "unfinished",
            "ended": "unfinished",
            "turns": len(pending),
            "messages": messages,
        }
        out.append(_generate_conversation(len(out), record, pending))
    return out


def _generate_conversation(index: int, c: dict[str, Any], turns: list[dict]) -> dict[str, Any]:
    return {
        "id": index,
        "task": c["task_id"],
        "conversation_id": c["conversation_id"],
        "system": None,
        "status": c["status"],
        "ended": c["ended"],
        "reason": c.get("reason"),
        "satisfied": c["ended"] == "user_terminated",
        "turns": c["turns"],
        "messages": _messages(c["messages"]),
        "steps": [compact_turn(t) for t in turns],
        **persona_fields(c),
    }


def compact_turn(t: dict[str, Any]) -> dict[str, Any]:
    """A turn record for the browser: where it sits (``at``: its prefix length) and candidates."""
    return {
        "turn": t["turn"],
        "at": len(t["prefix"]),
        "chosen": t["chosen"],
        "candidates": [compact_candidate(c) for c in t["candidates"]],
    }


def compact_candidate(c: dict[str, Any]) -> dict[str, Any]:
    futures = c.get("futures")
    return {
        "text": c["text"],
        "source": c["source"],
        "mr": c["mr"],
        "stderr": c["stderr"],
        "metric_means": c["metric_means"],
        "unscored": c["unscored"],
        "sample_rewards": c["sample_rewards"],
        "reasons": c["reasons"],
        "stopped": c.get("stopped"),
        "futures": None
        if futures is None
        else [compact_future(i, f) for i, f in enumerate(futures)],
    }


def compact_future(index: int, sample: dict[str, Any]) -> dict[str, Any]:
    """A sampled future: only the messages it added, how it ended, and its scores."""
    future = sample["future"]
    added = future["conversation"]["messages"][future.get("start", 0) :]
    return {
        "index": future.get("sample_index", index),
        "added": _messages(added),
        "ended": future["ended"],
        "error": future.get("error"),
        "closing": future.get("closing_message"),
        "reward": sample["reward"],
        "reason": sample.get("reason"),
        "scores": {
            name: {
                "value": s.get("value"),
                "reason": s.get("reason"),
                "raw": list(s.get("raw", [])),
                "detail": s.get("detail", {}),
            }
            for name, s in sample["scores"].items()
        },
    }


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]
