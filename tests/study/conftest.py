"""Shared pieces of the study tests: configs, an in-process app client, a real server process."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from collabrl.cli.study import invite
from collabrl.study.config import StudyConfig

pytest.importorskip("fastapi", reason="the study app needs the `study` extra")

SCRIPTED = {"kind": "scripted", "replies": ["Tell me more about the reader.", "Here is a draft."]}


def study_data(tmp_path: Path, **fields: Any) -> dict[str, Any]:
    """A study config as plain data: two scripted systems, three doc-chat briefs, SQLite in tmp."""
    data: dict[str, Any] = {
        "title": "Test study",
        "roles": {"alpha": SCRIPTED, "beta": SCRIPTED},
        "systems": [{"name": "alpha", "role": "alpha"}, {"name": "beta", "role": "beta"}],
        "tasks": {"set": "doc-chat", "limit": 3},
        "participants": 4,
        "systems_per_participant": 1,
        "rating_every": 2,
        "database": f"sqlite:///{tmp_path / 'study.sqlite'}",
    }
    data.update(fields)
    return data


@pytest.fixture
def make_config(tmp_path):
    def make(**fields: Any) -> StudyConfig:
        return StudyConfig.model_validate(study_data(tmp_path, **fields))

    return make


class Clock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def session_clock(monkeypatch) -> Clock:
    """The wall clock admin sessions expire by, at 2026-01-01 until a test moves it."""
    from collabrl.study import admin  # after the importorskip above: it needs fastapi

    clock = Clock(1_767_225_600.0)
    monkeypatch.setattr(admin, "session_clock", clock)
    return clock


def links_for(config: StudyConfig, n: int) -> list[str]:
    """Paths (``/p/TOKEN``) of ``n`` new participants (in a thread: Playwright runs a loop here)."""
    with ThreadPoolExecutor(1) as pool:
        links = pool.submit(asyncio.run, invite(config, n)).result()
    return ["/p/" + link.rsplit("/p/", 1)[1] for link in links]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def session_id_of(html: str) -> str:
    return re.search(r'name="session_id" value="(\d+)"', html).group(1)


def events_of(body: str) -> list[dict]:
    import json

    return [json.loads(line) for line in body.splitlines() if line.strip()]


class Person:
    """A participant driving the app over HTTP (a TestClient or an httpx2 client)."""

    def __init__(self, client, path: str) -> None:
        self.client, self.path = client, path
        self.csrf = csrf_of(client.get(path).text)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}

    def say(self, text: str):
        return self.client.post(f"{self.path}/message", json={"text": text}, headers=self.headers)

    def rate(self, turn: int, value: int):
        return self.client.post(
            f"{self.path}/rating", json={"turn": turn, "value": value}, headers=self.headers
        )

    def finish(self, document: str = "The final text.", **ratings: str):
        page = self.client.get(self.path).text
        form = {
            "csrf_token": self.csrf,
            "session_id": session_id_of(page),
            "document": document,
            "rating_document": "8",
            "rating_interaction": "7",
            "rating_engagement": "6",
        }
        form.update(ratings)
        return self.client.post(f"{self.path}/finish", data=form, follow_redirects=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``collabrl study serve`` in a subprocess; ``restart()`` kills it (SIGKILL) and starts it."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path, self.env = config_path, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "collabrl",
            "study",
            "serve",
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
        ]
        log = self.config_path.parent / "server.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                args,
                cwd=self.config_path.parent,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx2.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx2.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 30 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()


@contextmanager
def serving(tmp_path: Path, data: dict[str, Any], env: dict[str, str] | None = None):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    server = ServerProcess(path, env).start()
    try:
        yield server
    finally:
        server.kill()
