"""The study's data as records: one per session, for the admin's JSONL/CSV export and analysis.

A session record holds who (the participant's number, never their token), which system under
which label, the task, start and finish times, time on task, the whole conversation, the turn
ratings, the final ratings and the final document. The CSV has the same records without the
conversation text, one row per session, with one column per rating (``turn_3``, ``document``,
...), ready for a spreadsheet or pandas.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collabrl.study.db import ChatMessage, Participant, Rating, StudySession

FINAL_KINDS = ("document", "interaction", "engagement")
CSV_FIELDS = (
    "participant",
    "session",
    "position",
    "system",
    "label",
    "task_id",
    "started_at",
    "finished_at",
    "seconds_on_task",
    "turns",
    "messages",
    "document_chars",
)


def session_records(db: Session) -> list[dict[str, Any]]:
    """Every session (started or not), ordered by participant and position."""
    numbers = {
        pid: number for pid, number in db.execute(select(Participant.id, Participant.number))
    }
    messages: dict[int, list[dict]] = defaultdict(list)
    for m in db.scalars(select(ChatMessage).order_by(ChatMessage.session_id, ChatMessage.seq)):
        messages[m.session_id].append({"role": m.role, "content": m.content, "at": m.created_at})
    turn_ratings: dict[int, dict[int, int]] = defaultdict(dict)
    final: dict[int, dict[str, int]] = defaultdict(dict)
    for r in db.scalars(select(Rating)):
        if r.kind == "turn":
            turn_ratings[r.session_id][r.turn] = r.value
        else:
            final[r.session_id][r.kind] = r.value
    rows = db.scalars(
        select(StudySession).order_by(StudySession.participant_id, StudySession.position)
    )
    return [
        _record(s, numbers[s.participant_id], messages[s.id], turn_ratings[s.id], final[s.id])
        for s in rows
    ]


def _record(
    s: StudySession, number: int, messages: list[dict], turns: dict[int, int], final: dict[str, int]
) -> dict[str, Any]:
    finished = s.finished_at is not None and s.started_at is not None
    return {
        "participant": number,
        "session": s.id,
        "position": s.position,
        "system": s.system,
        "label": s.label,
        "task_id": s.task_id,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "seconds_on_task": round(s.finished_at - s.started_at, 3) if finished else None,
        "turns": sum(m["role"] == "assistant" for m in messages),
        "messages": messages,
        "turn_ratings": {str(t): v for t, v in sorted(turns.items())},
        "ratings": {k: final[k] for k in FINAL_KINDS if k in final},
        "document": s.document,
    }


def progress_rows(db: Session) -> list[dict[str, Any]]:
    """Per system: sessions assigned, started, finished, and the mean of each final rating."""
    rows: dict[str, dict[str, Any]] = {}
    for record in session_records(db):
        row = rows.setdefault(
            record["system"],
            {
                "system": record["system"],
                "assigned": 0,
                "started": 0,
                "finished": 0,
                **{k: [] for k in FINAL_KINDS},
            },
        )
        row["assigned"] += 1
        row["started"] += record["started_at"] is not None
        row["finished"] += record["finished_at"] is not None
        for kind, value in record["ratings"].items():
            row[kind].append(value)
    for row in rows.values():
        for kind in FINAL_KINDS:
            values = row[kind]
            row[kind] = round(sum(values) / len(values), 2) if values else None
    return sorted(rows.values(), key=lambda r: r["system"])


def to_jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def to_csv(records: list[dict[str, Any]]) -> str:
    turns = sorted({int(t) for r in records for t in r["turn_ratings"]})
    fields = [*CSV_FIELDS, *(f"turn_{t}" for t in turns), *FINAL_KINDS]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {k: r[k] for k in CSV_FIELDS if k in r}
        row["messages"] = len(r["messages"])
        row["document_chars"] = len(r["document"] or "")
        row.update({f"turn_{t}": v for t, v in r["turn_ratings"].items()})
        row.update(r["ratings"])
        writer.writerow(row)
    return out.getvalue()
