"""Turning the data engine's records into training data: DPO pairs and SFT rows.

DPO pairs use TRL's conversational preference format: ``prompt`` (the conversation prefix as
messages), ``chosen`` and ``rejected`` (one assistant message each): per scored turn, the
highest-MR candidate against the lowest, kept when the MR gap is at least ``min_gap``; a candidate
the length limit cut is never the chosen reply (it may be the rejected one when the data engine
scored it). SFT rows are the best path of every finished conversation (``messages``), read from
its latest record (a rerun that retried a failed conversation appends a newer one). Rows are split into train and
eval by conversation, never by row, so no conversation leaks across the split (a flaw of the
original code). Validation drops chosen == rejected and empty replies and reports the counts.
Files are written atomically as JSONL, optionally as ``datasets`` folders, with a manifest.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from collabrl.config import ExportConfig
from collabrl.engine import CONVERSATIONS_FILE, TURNS_FILE
from collabrl.records import dumps_record, latest_by, read_jsonl, write_atomic, write_manifest


def split_of(conversation_id: str, eval_fraction: float) -> str:
    """``train`` or ``eval``, by a stable hash of the conversation id."""
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction else "train"


def dpo_pair(turn: dict[str, Any], min_gap: float, counts: Counter[str]) -> dict[str, Any] | None:
    """The (best, worst) pair of one turn record, or None (the reason is counted)."""
    scored = [c for c in turn["candidates"] if c["mr"] is not None]
    uncut = [c for c in scored if not c.get("cut")]
    if len(scored) < 2:
        counts["fewer_than_two_scored"] += 1
        return None
    if not uncut:
        counts["every_scored_candidate_cut"] += 1
        return None
    chosen = max(uncut, key=lambda c: c["mr"])
    rejected = min(scored, key=lambda c: c["mr"])
    gap = chosen["mr"] - rejected["mr"]
    if gap < min_gap:
        counts["gap_below_min"] += 1
        return None
    if not chosen["text"].strip() or not rejected["text"].strip():
        counts["empty_reply"] += 1
        return None
    if chosen["text"].strip() == rejected["text"].strip():
        counts["chosen_equals_rejected"] += 1
        return None
    counts["kept"] += 1
    return {
        "prompt": turn["prefix"],
        "chosen": [{"role": "assistant", "content": chosen["text"]}],
        "rejected": [{"role": "assistant", "content": rejected["text"]}],
        "conversation_id": turn["conversation_id"],
        "turn": turn["turn"],
        "mr_chosen": chosen["mr"],
        "mr_rejected": rejected["mr"],
    }


def sft_row(conversation: dict[str, Any], counts: Counter[str]) -> dict[str, Any] | None:
    """The best path of an ``ok`` conversation that has an assistant turn."""
    if conversation["status"] != "ok":
        counts["failed_conversation"] += 1
        return None
    messages = conversation["messages"]
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        counts["no_assistant_turn"] += 1
        return None
    if any(not m["content"].strip() for m in messages):
        counts["empty_message"] += 1
        return None
    counts["kept"] += 1
    return {"messages": messages, "conversation_id": conversation["conversation_id"]}


def _split(rows: Iterable[dict[str, Any]], eval_fraction: float) -> dict[str, list[dict[str, Any]]]:
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for row in rows:
        splits[split_of(row["conversation_id"], eval_fraction)].append(row)
    return splits


def export(config: ExportConfig) -> dict[str, Any]:
    """Write ``dpo_{train,eval}.jsonl`` and ``sft_{train,eval}.jsonl``; return the report."""
    turns_path = config.input_dir / TURNS_FILE
    convs_path = config.input_dir / CONVERSATIONS_FILE
    for path in (turns_path, convs_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `collabrl generate` first")
    dpo_counts: Counter[str] = Counter()
    sft_counts: Counter[str] = Counter()
    pairs = [p for t in read_jsonl(turns_path) if (p := dpo_pair(t, config.min_gap, dpo_counts))]
    conversations = latest_by(read_jsonl(convs_path), "conversation_id").values()
    rows = [r for c in conversations if (r := sft_row(c, sft_counts))]
    entries = []
    sizes: dict[str, int] = {}
    for kind, data in (("dpo", pairs), ("sft", rows)):
        for split, items in _split(data, config.eval_fraction).items():
            name = f"{kind}_{split}"
            entries.append(
                write_atomic(config.output_dir / f"{name}.jsonl", map(dumps_record, items))
            )
            sizes[name] = len(items)
            if config.save_dataset:
                _save_dataset(items, config.output_dir / name, config.push_to_hub, kind, split)
    report = {"dpo": dict(dpo_counts), "sft": dict(sft_counts), "rows": sizes}
    write_manifest(config.output_dir, entries, command="export", report=report)
    return report


def _save_dataset(
    items: list[dict[str, Any]], folder: Path, push_to_hub: str | None, kind: str, split: str
) -> None:
    """A ``datasets`` copy of the rows (needs the ``train`` extra), pushed to the hub if asked
    (one hub config per kind, ``dpo`` or ``sft``, with ``train`` and ``eval`` splits)."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    dataset = Dataset.from_list(items)
    dataset.save_to_disk(str(folder))
    if push_to_hub:
        dataset.push_to_hub(push_to_hub, config_name=kind, split=split)
