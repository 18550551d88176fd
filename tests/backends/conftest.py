"""Fixtures shared by the backend tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from collabrl.testing.fake_openai import FakeOpenAIServer


@pytest.fixture
def fake():
    """``fake(**options)`` starts a fake OpenAI/Anthropic server on loopback; all are closed after."""
    servers: list[FakeOpenAIServer] = []

    def start(**options) -> FakeOpenAIServer:
        servers.append(FakeOpenAIServer(**options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def read_only_folder():
    """``read_only_folder(file)`` makes ``file`` 0o444 and its folder 0o555, as on a shared mount,
    and returns a function giving the folder's modification time, files and their bytes. Root
    still writes there, so assert on that, not on errors: a -wal or -shm file created and removed
    again still changes the folder's time. The folders are made writable again after the test,
    so that they can be removed."""
    folders: list[Path] = []

    def freeze(file: Path) -> Callable[[], tuple[int, dict[str, bytes]]]:
        file.chmod(0o444)
        file.parent.chmod(0o555)
        folders.append(file.parent)
        return lambda: (
            file.parent.stat().st_mtime_ns,
            {path.name: path.read_bytes() for path in file.parent.iterdir()},
        )

    yield freeze
    for folder in folders:
        folder.chmod(0o755)
