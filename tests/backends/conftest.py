"""Fixtures shared by the backend tests."""

from __future__ import annotations

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
