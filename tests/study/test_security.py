"""Safety of the study app: CSRF, rate and size limits, admin access, isolation, escaping."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from collabrl.backends.scripted import ScriptedBackend
from collabrl.study.app import create_app
from collabrl.study.chat import StudySystem
from collabrl.study.security import CSP, RateLimiter
from collabrl.types import GenerationParams

from .conftest import Person, csrf_of, links_for

ADMIN = "admin-token-for-tests"
SCRIPT = "<script>window.pwned = 1</script>"


@pytest.fixture
def client_for():
    def make(config, admin_token: str | None = ADMIN, reply: str = "fine"):
        backend = ScriptedBackend([reply])
        systems = {n: StudySystem(n, backend, GenerationParams()) for n in ("alpha", "beta")}
        return TestClient(create_app(config, admin_token=admin_token, systems=systems))

    return make


def test_state_changes_need_the_participants_csrf_token(make_config, client_for):
    config = make_config()
    first, second = links_for(config, 2)
    with client_for(config) as client:
        person, other = Person(client, first), Person(client, second)
        for headers in ({}, {"X-CSRF-Token": "forged"}, other.headers):
            response = client.post(f"{first}/message", json={"text": "hi"}, headers=headers)
            assert response.status_code == 403 and "CSRF" in response.json()["error"]
        form = {"csrf_token": "", "session_id": "1", "document": "d"}
        assert client.post(f"{first}/finish", data=form).status_code == 403
        assert person.say("hi").status_code == 200


def test_message_endpoint_is_rate_limited(make_config, client_for):
    config = make_config(limits={"messages_per_minute": 1, "message_burst": 2}, rating_every=10)
    (path,) = links_for(config, 1)
    with client_for(config) as client:
        person = Person(client, path)
        assert [person.say(str(i)).status_code for i in range(2)] == [200, 200]
        limited = person.say("third")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_rate_limiter_refills():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=1, clock=lambda: now[0])
    assert limiter.take("a") == 0 and limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0  # per participant
    now[0] = 1.0
    assert limiter.take("a") == 0


def test_size_limits(make_config, client_for):
    config = make_config(
        limits={"max_message_chars": 50, "max_document_chars": 100, "max_request_bytes": 2048}
    )
    (path,) = links_for(config, 1)
    with client_for(config) as client:
        person = Person(client, path)
        too_long = person.say("x" * 51)
        assert too_long.status_code == 413 and "limit 50" in too_long.json()["error"]
        draft = client.post(f"{path}/draft", json={"text": "y" * 101}, headers=person.headers)
        assert draft.status_code == 413
        huge = client.post(
            f"{path}/draft",
            content=b'{"text": "' + b"z" * 5000 + b'"}',
            headers={**person.headers, "Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        assert person.say("").status_code == 422
        assert person.say("x" * 50).status_code == 200


def test_admin_needs_the_token(make_config, client_for):
    config = make_config()
    links_for(config, 2)
    with client_for(config) as client:
        assert client.get("/admin/export.csv").status_code == 401
        bad = {"Authorization": "Bearer wrong"}
        assert client.get("/admin/export.jsonl", headers=bad).status_code == 401
        login = client.get("/admin")
        assert login.status_code == 200 and 'type="password"' in login.text
        csrf = login.text.split('name="csrf_token" value="')[1].split('"')[0]
        wrong = client.post("/admin/login", data={"csrf_token": csrf, "token": "nope"})
        assert wrong.status_code == 401
        assert client.post("/admin/login", data={"token": ADMIN}).status_code == 403
        ok = client.post(
            "/admin/login", data={"csrf_token": csrf, "token": ADMIN}, follow_redirects=False
        )
        assert ok.status_code == 303 and "httponly" in ok.headers["set-cookie"].lower()
        page = client.get("/admin")  # the cookie now
        assert "2 participant link(s)" in page.text and 'data-system="alpha"' in page.text
    with client_for(config, admin_token=None) as client:
        assert client.get("/admin").status_code == 503
        assert (
            client.get("/admin/export.csv", headers={"Authorization": "Bearer "}).status_code == 503
        )


def test_a_token_reaches_only_its_own_session(make_config, client_for):
    config = make_config()
    first, second = links_for(config, 2)
    with client_for(config) as client:
        Person(client, first).say("secret plans of the first participant")
        other = client.get(second).text
        assert "secret plans" not in other
        assert client.get(first[:-1] + ("A" if first[-1] != "A" else "B")).status_code == 404
        assert client.get("/p/" + "x" * 500).status_code == 404
        assert client.post("/p/nonsense/message", json={"text": "hi"}).status_code == 404


def test_text_is_escaped_and_headers_are_strict(make_config, client_for):
    config = make_config()
    (path,) = links_for(config, 1)
    with client_for(config, reply=f"model says {SCRIPT}") as client:
        Person(client, path).say(f"I type {SCRIPT}")
        page = client.get(path)
    assert SCRIPT not in page.text and "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page.text
    assert page.headers["content-security-policy"] == CSP and "script-src 'self'" in CSP
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert csrf_of(page.text)


def test_rate_limiter_waits_without_taking():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=1, clock=lambda: now[0])
    assert limiter.wait("a") == 0 and limiter.wait("a") == 0
    limiter.take("a")
    assert limiter.wait("a") == pytest.approx(1.0)
    now[0] = 0.5
    assert limiter.wait("a") == pytest.approx(0.5)


def test_rate_limiter_memory_is_bounded():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0], max_keys=3)
    for key in "abcde":
        limiter.take(key)
        limiter.take(key)
    assert len(limiter) == 3  # the least recently used went first
    assert limiter.take("a") == 0  # forgotten means a fresh, full bucket: never a lockout
    assert limiter.take("e") > 0
    now[0] = 2.0  # every bucket is full again: all forgotten at the next touch
    limiter.take("f")
    assert len(limiter) == 1
