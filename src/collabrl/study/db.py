"""The study's tables (SQLAlchemy 2.x) and opening a database from any SQLAlchemy URL.

Everything a participant does is a row, written the moment it is sent: participants (a hash of
their link's token, never the token), their sessions (one per system they work with, with the
task, the neutral label, start and finish times, the autosaved draft and the final document),
chat messages, ratings, and events (page views, backend failures with their reason). The app
keeps no state of its own, so a restarted server resumes every participant where they were.
Times are seconds since the epoch (UTC), which makes time on task a subtraction.

SQLite (the default) is opened in WAL mode with a busy timeout and foreign keys on; any other
SQLAlchemy URL (``postgresql+psycopg://...``) works with its driver installed.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)  # 0, 1, ...: picks the assignment
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class StudySession(Base):
    """One participant working with one system on one task."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # order within the participant, from 0
    system: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(50))  # what the participant sees: "Assistant A"
    task_id: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    finished_at: Mapped[float | None] = mapped_column(Float, default=None)
    draft: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[str | None] = mapped_column(Text, default=None)


class ChatMessage(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the session
    role: Mapped[str] = mapped_column(String(20))  # user / assistant
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class Rating(Base):
    """A 1-10 rating: ``turn`` ratings during the chat (``turn`` = replies so far), final ones
    (document, interaction, engagement) with ``turn`` 0."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("session_id", "kind", "turn"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    turn: Mapped[int] = mapped_column(Integer)
    value: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)


class Setting(Base):
    """Server secrets that must survive restarts (the CSRF key)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _sqlite_pragmas(connection, record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def open_database(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url`` (a bare path means a SQLite file), tables created if ``create``."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise FileNotFoundError(f"no study database at {path}")
    engine = create_engine(url, connect_args={"check_same_thread": False} if is_sqlite else {})
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    if create:
        Base.metadata.create_all(engine)
    return engine
