"""All reads and writes of the study database, as async methods for the web app.

SQLAlchemy's synchronous engine does the work on a small thread pool (one thread for SQLite,
which serialises its writes anyway and so never meets a lock; a few for a server database), so
the event loop never waits on the disk. Each method is one short transaction that commits before
it returns: when the app answers, what the participant sent is on disk.

``SessionState`` is what the app needs to render and to enforce the study's rules: the
conversation, the turn ratings given, the draft, and the derived turn count, pending rating and
whether a reply is owed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collabrl.study.assignment import Assignment
from collabrl.study.db import ChatMessage, Event, Participant, Rating, Setting, StudySession
from collabrl.study.export import progress_rows, session_records
from collabrl.study.security import hash_token, new_token


class Conflict(Exception):
    """A write the study's rules do not allow now (e.g. a second message before the reply)."""


@dataclass(frozen=True)
class MessageView:
    seq: int
    role: str
    content: str


@dataclass(frozen=True)
class SessionState:
    id: int
    position: int
    sessions: int  # how many sessions this participant has in all
    system: str
    label: str
    task_id: str
    started_at: float | None
    finished_at: float | None
    draft: str
    messages: tuple[MessageView, ...] = ()
    turn_ratings: Mapping[int, int] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        """Assistant replies so far."""
        return sum(m.role == "assistant" for m in self.messages)

    @property
    def awaiting_reply(self) -> bool:
        return bool(self.messages) and self.messages[-1].role == "user"

    def pending_rating(self, every: int) -> int | None:
        """The turn whose rating is due now, if any (the chat waits for it)."""
        turns = self.turns
        if turns and turns % every == 0 and turns not in self.turn_ratings:
            return turns
        return None


def threaded(method: Callable) -> Callable:
    """Run a synchronous Store method on the store's database threads."""

    @functools.wraps(method)
    async def run(self: Store, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, self, *args))

    return run


class Store:
    """The study database behind async methods; ``close()`` when done."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        threads = 1 if engine.dialect.name == "sqlite" else 4
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="study-db")

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    # -- participants ------------------------------------------------------------------------
    @threaded
    def create_participants(self, count: int, plan: Callable[[int], list[Assignment]]) -> list[str]:
        """``count`` new participants with their sessions; returns their link tokens."""
        tokens = []
        with Session(self.engine) as db, db.begin():
            start = db.scalar(select(func.coalesce(func.max(Participant.number) + 1, 0)))
            for number in range(start, start + count):
                token = new_token()
                participant = Participant(
                    number=number, token_hash=hash_token(token), created_at=time.time()
                )
                db.add(participant)
                db.flush()
                for a in plan(number):
                    db.add(
                        StudySession(
                            participant_id=participant.id,
                            position=a.position,
                            system=a.system,
                            label=a.label,
                            task_id=a.task_id,
                        )
                    )
                tokens.append(token)
        return tokens

    @threaded
    def count_participants(self) -> int:
        with Session(self.engine) as db:
            return db.scalar(select(func.count(Participant.id))) or 0

    @threaded
    def participant_id(self, token: str) -> int | None:
        with Session(self.engine) as db:
            return db.scalar(
                select(Participant.id).where(Participant.token_hash == hash_token(token))
            )

    @threaded
    def current_session(self, participant_id: int) -> SessionState | None:
        """The participant's first unfinished session (None when all are finished)."""
        with Session(self.engine) as db:
            row = db.scalars(
                select(StudySession)
                .where(
                    StudySession.participant_id == participant_id,
                    StudySession.finished_at.is_(None),
                )
                .order_by(StudySession.position)
            ).first()
            return None if row is None else _state(db, row)

    # -- one session ---------------------------------------------------------------------------
    @threaded
    def mark_started(self, session_id: int) -> None:
        with Session(self.engine) as db, db.begin():
            row = db.get_one(StudySession, session_id)
            if row.started_at is None:
                row.started_at = time.time()

    @threaded
    def add_message(self, session_id: int, role: str, content: str) -> MessageView:
        """Append a message; a user message only when no reply is owed, a reply only when one is."""
        with Session(self.engine) as db, db.begin():
            last = db.scalars(
                select(ChatMessage)
                .where(ChatMessage.session_id == session_id)
                .order_by(ChatMessage.seq.desc())
            ).first()
            owed = last is not None and last.role == "user"
            if owed != (role == "assistant"):
                raise Conflict("waiting for the assistant's reply" if owed else "no reply is owed")
            seq = 1 if last is None else last.seq + 1
            db.add(
                ChatMessage(
                    session_id=session_id,
                    seq=seq,
                    role=role,
                    content=content,
                    created_at=time.time(),
                )
            )
        return MessageView(seq, role, content)

    @threaded
    def add_rating(self, session_id: int, kind: str, turn: int, value: int) -> bool:
        """Store a rating; False (nothing changed) when this one was given already."""
        try:
            with Session(self.engine) as db, db.begin():
                db.add(
                    Rating(
                        session_id=session_id,
                        kind=kind,
                        turn=turn,
                        value=value,
                        created_at=time.time(),
                    )
                )
        except IntegrityError:
            return False
        return True

    @threaded
    def save_draft(self, session_id: int, text: str) -> None:
        with Session(self.engine) as db, db.begin():
            db.get_one(StudySession, session_id).draft = text

    @threaded
    def finish(self, session_id: int, document: str, ratings: Mapping[str, int]) -> None:
        """The final document and ratings, and the finish time, in one transaction."""
        with Session(self.engine) as db, db.begin():
            row = db.get_one(StudySession, session_id)
            if row.finished_at is not None:
                raise Conflict("this session is finished already")
            now = time.time()
            row.document, row.draft, row.finished_at = document, document, now
            for kind, value in ratings.items():
                db.add(
                    Rating(session_id=session_id, kind=kind, turn=0, value=value, created_at=now)
                )

    @threaded
    def add_event(self, session_id: int | None, kind: str, detail: Mapping[str, Any]) -> None:
        with Session(self.engine) as db, db.begin():
            db.add(
                Event(
                    session_id=session_id,
                    kind=kind,
                    detail=json.dumps(dict(detail)),
                    created_at=time.time(),
                )
            )

    # -- server and admin ------------------------------------------------------------------------
    @threaded
    def secret(self, key: str) -> str:
        """A random secret stored under ``key`` (created on first use, kept across restarts)."""
        with Session(self.engine) as db, db.begin():
            row = db.get(Setting, key)
            if row is None:
                row = Setting(key=key, value=new_token() + new_token())
                db.add(row)
            return row.value

    @threaded
    def progress(self) -> list[dict[str, Any]]:
        with Session(self.engine) as db:
            return progress_rows(db)

    @threaded
    def records(self) -> list[dict[str, Any]]:
        with Session(self.engine) as db:
            return session_records(db)


def _state(db: Session, row: StudySession) -> SessionState:
    messages = db.scalars(
        select(ChatMessage).where(ChatMessage.session_id == row.id).order_by(ChatMessage.seq)
    ).all()
    ratings = db.scalars(select(Rating).where(Rating.session_id == row.id, Rating.kind == "turn"))
    total = db.scalar(
        select(func.count(StudySession.id)).where(StudySession.participant_id == row.participant_id)
    )
    return SessionState(
        id=row.id,
        position=row.position,
        sessions=total or 1,
        system=row.system,
        label=row.label,
        task_id=row.task_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        draft=row.draft,
        messages=tuple(MessageView(m.seq, m.role, m.content) for m in messages),
        turn_ratings={r.turn: r.value for r in ratings},
    )
