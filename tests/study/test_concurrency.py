"""20 participants at once over real HTTP complete their sessions without a lost message."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import httpx2
import pytest

from collabrl.study.config import StudyConfig

from .conftest import csrf_of, events_of, links_for, serving, session_id_of, study_data

PARTICIPANTS = 20
MESSAGES = 3

pytestmark = pytest.mark.slow


async def participant(client: httpx2.AsyncClient, path: str) -> None:
    csrf = csrf_of((await client.get(path)).text)
    headers = {"X-CSRF-Token": csrf}
    for i in range(MESSAGES):
        response = await client.post(
            f"{path}/message", json={"text": f"{path} message {i}"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert events_of(response.text)[-1]["type"] == "done"
    page = (await client.get(path)).text
    form = {
        "csrf_token": csrf,
        "session_id": session_id_of(page),
        "document": f"doc of {path}",
        "rating_document": "8",
        "rating_interaction": "7",
        "rating_engagement": "6",
    }
    finished = await client.post(f"{path}/finish", data=form)
    assert finished.status_code == 303


async def everyone(url: str, paths: list[str]) -> None:
    limits = httpx2.Limits(max_connections=PARTICIPANTS)
    async with httpx2.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(participant(client, p) for p in paths))


def test_twenty_concurrent_participants_lose_nothing(tmp_path):
    reply = {"kind": "scripted", "replies": ["A reply that streams in several chunks, one by one."]}
    data = study_data(tmp_path, roles={"alpha": reply, "beta": reply}, rating_every=10)
    paths = links_for(StudyConfig.model_validate(data), PARTICIPANTS)
    with serving(tmp_path, data, env=dict(os.environ)) as server:
        asyncio.run(everyone(server.url, paths))
    with sqlite3.connect(tmp_path / "study.sqlite") as db:
        finished = db.execute(
            "SELECT COUNT(*) FROM sessions WHERE finished_at IS NOT NULL"
        ).fetchone()
        rows = db.execute(
            "SELECT session_id, seq, role, content FROM messages ORDER BY session_id, seq"
        ).fetchall()
    assert finished == (PARTICIPANTS,)
    assert len(rows) == PARTICIPANTS * MESSAGES * 2
    by_session: dict[int, list] = {}
    for session, seq, role, content in rows:
        by_session.setdefault(session, []).append((seq, role, content))
    for messages in by_session.values():
        assert [m[0] for m in messages] == list(range(1, 2 * MESSAGES + 1))
        assert [m[1] for m in messages] == ["user", "assistant"] * MESSAGES
    user_texts = sorted(content for _, _, role, content in rows if role == "user")
    assert user_texts == sorted(f"{p} message {i}" for p in paths for i in range(MESSAGES))
