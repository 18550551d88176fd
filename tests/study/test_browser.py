"""A participant completes a whole study in headless Chromium against the real server.

The server runs as ``collabrl study serve`` in a subprocess and is killed (SIGKILL) and started
again mid-session. System "alpha" is scripted; system "beta" is the OpenAI-compatible backend
talking to the fake server, whose first answer is an HTTP 500 (no retries configured), so the
participant meets a backend failure and retries. Script tags typed by the participant and
returned by the model must show as text and never run. Pages are opened with the
Content-Security-Policy bypassed: Playwright's checks need ``eval``, and the escaping must hold
on its own (the policy is a second line, checked in test_security.py).

Needs Debian's chromium and the Python ``playwright`` package (dev extra); skipped without them.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from collabrl.study.config import StudyConfig
from collabrl.testing.fake_openai import FakeOpenAIServer

from .conftest import links_for, serving, study_data

TYPED = "Hi <script>window.pwned = 'participant'</script> there"
MODEL_SAYS = "Sure <script>window.pwned = 'model'</script><b>bold?</b> <img src=x onerror=\"window.pwned='img'\">"

pytestmark = pytest.mark.slow


def config_data(tmp_path: Path, fake: FakeOpenAIServer) -> dict:
    roles = {
        "alpha": {
            "kind": "scripted",
            "rules": [{"contains": "<script>", "reply": MODEL_SAYS}],
            "replies": ["Alpha: who is the reader?", "Alpha: here is a draft."],
        },
        "beta": {
            "kind": "openai",
            "model": "fake-model",
            "base_url": fake.base_url,
            "api_key_env": "COLLABRL_STUDY_TEST_UNSET_KEY",
            "retry": {"max_attempts": 1},
        },
    }
    return study_data(tmp_path, roles=roles, systems_per_participant=2, rating_every=2)


def say(page, text: str, replies: int) -> None:
    page.fill("#input", text)
    page.click("#send")
    page.wait_for_function(
        f"document.querySelectorAll('#messages .message.assistant:not(.streaming)').length === {replies}"
        " && !document.querySelector('#messages .streaming')"
    )


def open_link(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#study[data-ready=yes]")


def finish(page, document: str, scores=("8", "7", "6")) -> None:
    page.fill("#document", document)
    for kind, value in zip(("document", "interaction", "engagement"), scores):
        page.check(f"input[name=rating_{kind}][value='{value}']")
    page.click("#finish-button")
    page.wait_for_load_state()


def test_a_whole_session_with_a_restart_a_failure_and_hostile_text(browser, tmp_path):
    errors: list[str] = []
    with FakeOpenAIServer(script=[500], reply_fn=lambda request, i: "Beta: a fine reply.") as fake:
        data = config_data(tmp_path, fake)
        first, second = links_for(StudyConfig.model_validate(data), 2)
        with serving(tmp_path, data, env=dict(os.environ)) as server:
            page = browser.new_page(bypass_csp=True)
            page.on("pageerror", lambda e: errors.append(str(e)))
            open_link(page, server.url + first)
            assert "Session 1 of 2" in page.inner_text("header")

            say(page, TYPED, replies=1)  # the scripted reply echoes hostile HTML
            texts = page.locator("#messages .text").all_inner_texts()
            assert texts == [TYPED, MODEL_SAYS]
            assert page.evaluate("window.pwned") is None
            assert page.locator("#messages script, #messages b, #messages img").count() == 0

            say(page, "Tell me more", replies=2)
            page.wait_for_selector("#rating:not([hidden])")
            assert page.is_disabled("#send")
            page.click("#rating .rate[data-value='7']")
            page.wait_for_selector("#rating", state="hidden")
            page.fill("#document", "Draft before the restart")
            page.wait_for_function(
                "document.getElementById('draft-status').textContent === 'Draft saved.'"
            )

            server.restart()
            open_link(page, server.url + first)
            assert page.locator("#messages .message").count() == 4
            assert page.input_value("#document") == "Draft before the restart"
            assert page.is_hidden("#rating") and page.evaluate("window.pwned") is None
            say(page, "One more change after the restart", replies=3)
            finish(page, "Final document one")
            assert "Session 2 of 2" in page.inner_text("header")

            page.fill("#input", "Beta, please help")
            page.click("#send")
            page.wait_for_selector("#retry:not([hidden])")
            assert "could not reply" in page.inner_text("#notice")
            assert page.input_value("#input") == ""  # stored on the server, shown in the chat
            assert page.locator("#messages .message.user .text").all_inner_texts() == [
                "Beta, please help"
            ]
            page.click("#retry")
            page.wait_for_function(
                "document.querySelectorAll('#messages .message.assistant').length === 1"
                " && !document.querySelector('#messages .streaming')"
            )
            assert (
                page.locator("#messages .message.assistant .text").inner_text()
                == "Beta: a fine reply."
            )
            assert page.is_hidden("#notice")
            finish(page, "Final document two", scores=("9", "9", "9"))
            assert "Thank you" in page.inner_text("main")

            other = browser.new_page(bypass_csp=True)
            open_link(other, server.url + second)
            assert "Tell me more" not in other.content() and "Final document" not in other.content()
            status = other.evaluate(
                """async (path) => {
                    const csrf = document.querySelector('meta[name="csrf-token"]').content;
                    const r = await fetch(path + '/message', {method: 'POST',
                        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                        body: JSON.stringify({text: 'intruder'})});
                    return r.status;
                }""",
                first,
            )
            assert status == 403
    assert errors == []
    assert fake.request_count == 2  # the failed request, then the retry

    with sqlite3.connect(tmp_path / "study.sqlite") as db:
        sessions = db.execute(
            "SELECT system, document, finished_at > started_at FROM sessions "
            "WHERE participant_id = 1 ORDER BY position"
        ).fetchall()
        roles = db.execute("SELECT role FROM messages ORDER BY session_id, seq").fetchall()
        ratings = db.execute("SELECT kind, turn, value FROM ratings ORDER BY id").fetchall()
        failures = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'backend_error'").fetchone()
        intruder = db.execute("SELECT COUNT(*) FROM messages WHERE content = 'intruder'").fetchone()
    assert sessions == [("alpha", "Final document one", 1), ("beta", "Final document two", 1)]
    assert [r[0] for r in roles] == ["user", "assistant"] * 4
    assert ratings == [
        ("turn", 2, 7),
        ("document", 0, 8),
        ("interaction", 0, 7),
        ("engagement", 0, 6),
        ("document", 0, 9),
        ("interaction", 0, 9),
        ("engagement", 0, 9),
    ]
    assert failures == (1,) and intruder == (0,)
