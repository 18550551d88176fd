"""The admin login cookie: a session derived from the token, never the token; it expires.

The session's wall clock is the ``session_clock`` fixture, moved by the tests (no sleeps).
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from collabrl.backends.scripted import ScriptedBackend
from collabrl.study.admin import COOKIE, WRONG_TOKEN_BURST
from collabrl.study.app import create_app
from collabrl.study.chat import StudySystem
from collabrl.study.security import admin_session, admin_session_ok
from collabrl.types import GenerationParams

ADMIN = "admin-token-for-tests"
KEY = "server-session-key"
HOUR = 3600


@contextmanager
def client_of(config, admin_token: str = ADMIN):
    systems = {
        n: StudySystem(n, ScriptedBackend(["fine"]), GenerationParams()) for n in ("alpha", "beta")
    }
    with TestClient(create_app(config, admin_token=admin_token, systems=systems)) as client:
        yield client


def form_csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def log_in(client: TestClient, token: str = ADMIN):
    form = {"csrf_token": form_csrf(client.get("/admin").text), "token": token}
    return client.post("/admin/login", data=form, follow_redirects=False)


def is_dashboard(response) -> bool:
    return response.status_code == 200 and 'id="progress"' in response.text


def test_the_login_cookie_is_a_session_not_the_token(make_config, session_clock):
    with client_of(make_config()) as client:
        login = log_in(client)
        assert login.status_code == 303
        header = login.headers["set-cookie"]
        session = client.cookies.get(COOKIE)
        assert session and ADMIN not in session and ADMIN not in header
        key = client.app.state.study.session_key
        assert admin_session_ok(key, ADMIN, session, session_clock.now, 12 * HOUR)
        assert "max-age=43200" in header.lower() and "httponly" in header.lower()
        assert "path=/admin" in header.lower() and "samesite=strict" in header.lower()
        assert is_dashboard(client.get("/admin"))
        assert client.get("/admin/export.csv").status_code == 200


def test_the_token_itself_is_refused_as_a_cookie_and_counts_as_a_guess(make_config, session_clock):
    with client_of(make_config()) as client:
        client.cookies.set(COOKIE, ADMIN)
        answers = [client.get("/admin/export.jsonl").status_code for _ in range(WRONG_TOKEN_BURST)]
        assert answers == [401] * WRONG_TOKEN_BURST
        assert client.get("/admin/export.jsonl").status_code == 429


def test_a_session_expires_after_its_lifetime(make_config, session_clock):
    with client_of(make_config(admin_session_hours=2)) as client:
        assert "max-age=7200" in log_in(client).headers["set-cookie"].lower()
        session_clock.now += 2 * HOUR - 1
        assert is_dashboard(client.get("/admin"))
        session_clock.now += 1
        page = client.get("/admin")
        assert page.status_code == 200 and 'type="password"' in page.text
        assert client.get("/admin/export.csv").status_code == 401
        assert is_dashboard(client.get("/admin", headers={"Authorization": f"Bearer {ADMIN}"}))


def test_expired_sessions_count_as_wrong_guesses(make_config, session_clock):
    with client_of(make_config()) as client:
        key = client.app.state.study.session_key
        client.cookies.set(COOKIE, admin_session(key, ADMIN, int(session_clock.now)))
        answers = {client.get("/admin/export.csv").status_code for _ in range(WRONG_TOKEN_BURST)}
        assert answers == {401}
        assert client.get("/admin/export.csv").status_code == 429


def test_a_session_made_with_another_token_is_refused(make_config, session_clock):
    with client_of(make_config()) as client:
        key = client.app.state.study.session_key
        client.cookies.set(
            COOKIE, admin_session(key, "another-token", int(session_clock.now) + HOUR)
        )
        assert client.get("/admin/export.csv").status_code == 401


def test_rotating_the_token_ends_every_session(make_config, session_clock):
    config = make_config()
    with client_of(config) as before:
        log_in(before)
        session = before.cookies.get(COOKIE)
        assert before.get("/admin/export.csv").status_code == 200
    with client_of(config, admin_token="rotated-token") as after:
        after.cookies.set(COOKIE, session)
        assert after.get("/admin/export.csv").status_code == 401
        after.cookies.clear()
        assert log_in(after, "rotated-token").status_code == 303
        assert after.get("/admin/export.csv").status_code == 200


def test_logout_clears_the_cookie_and_needs_csrf(make_config, session_clock):
    with client_of(make_config()) as client:
        log_in(client)
        dashboard = client.get("/admin")
        assert client.post("/admin/logout", data={"csrf_token": "forged"}).status_code == 403
        assert is_dashboard(client.get("/admin"))
        out = client.post(
            "/admin/logout", data={"csrf_token": form_csrf(dashboard.text)}, follow_redirects=False
        )
        assert out.status_code == 303 and "max-age=0" in out.headers["set-cookie"].lower()
        assert client.cookies.get(COOKIE) is None
        assert 'type="password"' in client.get("/admin").text


@pytest.mark.parametrize(
    "sent",
    [
        "",
        ".",
        "not-a-session",
        "1767229200",
        "1767229200.",
        "1767229200.00ff",
        "１７６７２２９２００.x",  # fullwidth digits: isdigit() but not ASCII
        "-1.x",
    ],
)
def test_malformed_sessions_are_refused(sent):
    assert not admin_session_ok(KEY, ADMIN, sent, 1_767_225_600, 12 * HOUR)


def test_a_session_is_bound_to_its_expiry_and_the_lifetime():
    now = 1_767_225_600
    good = admin_session(KEY, ADMIN, now + HOUR)
    assert admin_session_ok(KEY, ADMIN, good, now, 12 * HOUR)
    mac = good.split(".", 1)[1]
    assert not admin_session_ok(KEY, ADMIN, f"{now + 2 * HOUR}.{mac}", now, 12 * HOUR)  # extended
    assert not admin_session_ok(KEY, ADMIN, good, now, HOUR / 2)  # lifetime shortened since
    assert not admin_session_ok(KEY, None, good, now, 12 * HOUR)  # admin pages disabled


def test_a_copied_session_needs_the_server_key_to_test_token_guesses():
    # the MAC is keyed by the server's secret: the token alone cannot make or check a session,
    # so a copied cookie does not let anyone test guesses of the token offline
    now = 1_767_225_600
    session = admin_session(KEY, ADMIN, now + HOUR)
    assert not admin_session_ok("another-server-key", ADMIN, session, now, 12 * HOUR)
    assert session != admin_session("another-server-key", ADMIN, now + HOUR)


def test_the_session_key_is_a_stored_secret_kept_across_restarts(make_config, session_clock):
    config = make_config()
    with client_of(config) as first:
        key = first.app.state.study.session_key
        log_in(first)
        session = first.cookies.get(COOKIE)
    assert len(key) >= 32 and key != first.app.state.study.csrf_key
    with client_of(config) as second:
        assert second.app.state.study.session_key == key
        second.cookies.set(COOKIE, session)
        assert second.get("/admin/export.csv").status_code == 200
