"""The systems under test and the replies they stream to participants.

A ``StudySystem`` is a backend (from the config's roles, with the usual limits, retries and
accounting; never cached, since a participant must get a fresh reply) plus an optional system
prompt. ``Replies`` runs one reply per session at a time as a background task that outlives the
HTTP request: a participant who reloads the page mid-reply, or whose connection drops, loses
nothing, because the reply is stored when it completes and a later request attaches to the
same job. The reply is stored only when complete; a backend failure is recorded as an event with
its reason and reported to the participant, whose message stays stored for a retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from collabrl.backends.base import Backend
from collabrl.backends.errors import BackendError
from collabrl.backends.stack import Roles
from collabrl.backends.streaming import stream_text
from collabrl.prompts import load_prompt
from collabrl.study.config import StudyConfig
from collabrl.study.store import MessageView, SessionState, Store
from collabrl.types import GenerationParams, Message

log = logging.getLogger(__name__)

RETRY_HINT = "Your message is saved; press Retry to ask again."


@dataclass(frozen=True)
class StudySystem:
    name: str
    backend: Backend
    params: GenerationParams
    system_prompt: str | None = None

    def prompt(self, conversation: Sequence[MessageView]) -> list[Message]:
        head = [Message(role="system", content=self.system_prompt)] if self.system_prompt else []
        return head + [Message(role=m.role, content=m.content) for m in conversation]


def build_systems(config: StudyConfig, roles: Roles) -> dict[str, StudySystem]:
    systems = {}
    for s in config.systems:
        prompt = load_prompt("proactive") if s.proactive else s.system_prompt
        generation = config.roles[s.role].generation.model_copy(update={"n": 1})
        systems[s.name] = StudySystem(s.name, roles[s.role], generation, prompt)
    return systems


@dataclass
class ReplyJob:
    """One reply in progress; any number of listeners replay its chunks and its outcome."""

    chunks: list[str] = field(default_factory=list)
    error: str | None = None
    done: bool = False
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def update(
        self, chunk: str | None = None, *, error: str | None = None, done: bool = False
    ) -> None:
        async with self._changed:
            if chunk:
                self.chunks.append(chunk)
            self.error, self.done = error, done
            self._changed.notify_all()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """``chunk`` events, then one ``done`` or ``error`` event."""
        sent = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda n=sent: len(self.chunks) > n or self.done)
                new, finished = self.chunks[sent:], self.done
            for chunk in new:
                yield {"type": "chunk", "text": chunk}
            sent += len(new)
            if finished:
                yield ({"type": "error", "message": self.error} if self.error else {"type": "done"})
                return


class Replies:
    """At most one reply job per session; jobs run as tasks owned by this object."""

    def __init__(self, store: Store, systems: dict[str, StudySystem]) -> None:
        self.store = store
        self.systems = systems
        self._jobs: dict[int, ReplyJob] = {}
        self._tasks: set[asyncio.Task] = set()

    def in_flight(self, session_id: int) -> bool:
        return session_id in self._jobs

    def start(self, state: SessionState) -> ReplyJob:
        """The session's running job, or a new one answering its stored conversation."""
        job = self._jobs.get(state.id)
        if job is None:
            job = self._jobs[state.id] = ReplyJob()
            task = asyncio.get_running_loop().create_task(self._run(job, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: ReplyJob, state: SessionState) -> None:
        system = self.systems[state.system]
        try:
            messages = system.prompt(state.messages)
            async with aclosing(stream_text(system.backend, messages, system.params)) as chunks:
                async for chunk in chunks:
                    await job.update(chunk)
            text = "".join(job.chunks)
            if not text.strip():
                raise BackendError("the model returned an empty reply")
            await self.store.add_message(state.id, "assistant", text)
        except BackendError as error:
            await self._failed(job, state, error.reason, str(error))
        except Exception as error:  # a bug must still reach the participant as a retry message
            log.exception("reply for session %d failed", state.id)
            await self._failed(job, state, type(error).__name__, str(error))
        else:
            await job.update(done=True)
        finally:
            self._jobs.pop(state.id, None)

    async def _failed(self, job: ReplyJob, state: SessionState, reason: str, detail: str) -> None:
        await self.store.add_event(state.id, "backend_error", {"reason": reason, "detail": detail})
        await job.update(error=f"The assistant could not reply ({reason}). {RETRY_HINT}", done=True)

    async def aclose(self) -> None:
        """Cancel replies in progress (their user messages stay stored for a retry)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
