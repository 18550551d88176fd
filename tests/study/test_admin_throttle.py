"""Wrong admin tokens are throttled per client, through every way a token is checked.

Each test serves one app to two clients at different addresses: an attacker who guesses and the
real admin, who must still get in while the attacker waits. The limiter's clock is a variable
the tests move, so no test sleeps.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

from fastapi.testclient import TestClient

from collabrl.backends.scripted import ScriptedBackend
from collabrl.study.admin import COOKIE
from collabrl.study.app import create_app
from collabrl.study.chat import StudySystem
from collabrl.study.security import admin_session
from collabrl.types import GenerationParams

from .conftest import Clock

ADMIN = "admin-token-for-tests"
RIGHT = {"Authorization": f"Bearer {ADMIN}"}
WRONG = {"Authorization": "Bearer guess"}
TRIES = 20  # more wrong guesses than any sensible limit allows


@contextmanager
def attacker_and_admin(config, clock: Clock):
    """Two clients of one app, at different addresses; the app runs while the block does."""
    systems = {
        n: StudySystem(n, ScriptedBackend(["fine"]), GenerationParams()) for n in ("alpha", "beta")
    }
    app = create_app(config, admin_token=ADMIN, systems=systems, clock=clock)
    with TestClient(app, client=("203.0.113.7", 40000)) as attacker:
        yield attacker, TestClient(app, client=("198.51.100.2", 50000))


def login_csrf(client: TestClient) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin").text).group(1)


def guess_until_refused(send) -> tuple[int, object]:
    """How many wrong guesses got a 401 before the first other answer, and that answer."""
    for tried in range(TRIES):
        response = send()
        if response.status_code != 401:
            return tried, response
    return TRIES, response


def assert_throttled(response) -> int:
    assert response.status_code == 429
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


def test_wrong_bearer_tokens_are_throttled_per_client(make_config):
    clock = Clock()
    with attacker_and_admin(make_config(), clock) as (attacker, admin):
        tried, refused = guess_until_refused(
            lambda: attacker.get("/admin/export.csv", headers=WRONG)
        )
        assert 1 <= tried < TRIES
        retry_after = assert_throttled(refused)
        assert attacker.get("/admin/export.csv", headers=RIGHT).status_code == 429
        assert all(
            admin.get("/admin/export.csv", headers=RIGHT).status_code == 200 for _ in range(TRIES)
        )  # right tokens never count against anyone
        clock.now += retry_after
        assert attacker.get("/admin/export.csv", headers=RIGHT).status_code == 200


def test_wrong_login_form_tokens_are_throttled_per_client(make_config):
    clock = Clock()
    with attacker_and_admin(make_config(), clock) as (attacker, admin):
        csrf = login_csrf(attacker)
        tried, refused = guess_until_refused(
            lambda: attacker.post("/admin/login", data={"csrf_token": csrf, "token": "guess"})
        )
        assert 1 <= tried < TRIES
        assert_throttled(refused)
        assert "Too many" in refused.text
        right = {"csrf_token": csrf, "token": ADMIN}
        assert attacker.post("/admin/login", data=right).status_code == 429
        login = admin.post("/admin/login", data=right, follow_redirects=False)
        assert login.status_code == 303 and COOKIE in login.headers["set-cookie"]


def test_wrong_admin_cookies_are_throttled_per_client(make_config, session_clock):
    with attacker_and_admin(make_config(), Clock()) as (attacker, admin):
        attacker.cookies.set(COOKIE, "guess")
        tried, refused = guess_until_refused(lambda: attacker.get("/admin/export.jsonl"))
        assert 1 <= tried < TRIES
        assert_throttled(refused)
        page = attacker.get("/admin")
        assert_throttled(page)
        assert "Too many" in page.text
        key = admin.app.state.study.session_key
        admin.cookies.set(COOKIE, admin_session(key, ADMIN, int(session_clock.now) + 60))
        assert admin.get("/admin/export.jsonl").status_code == 200


def test_guesses_through_every_channel_count_together(make_config):
    with attacker_and_admin(make_config(), Clock()) as (attacker, admin):
        csrf = login_csrf(attacker)
        channels = [
            lambda: attacker.get("/admin/export.csv", headers=WRONG),
            lambda: attacker.get("/admin/export.csv", headers={"Cookie": f"{COOKIE}=guess"}),
            lambda: attacker.post("/admin/login", data={"csrf_token": csrf, "token": "guess"}),
        ]
        answers = [channels[i % 3]().status_code for i in range(TRIES)]
        assert 429 in answers and answers[-3:] == [429, 429, 429]
        assert answers.index(429) < TRIES - 3


def test_a_forged_forwarded_for_header_does_not_escape_the_throttle(make_config):
    with attacker_and_admin(make_config(), Clock()) as (attacker, admin):
        tries = iter(range(TRIES))
        tried, refused = guess_until_refused(
            lambda: attacker.get(
                "/admin/export.csv", headers={**WRONG, "X-Forwarded-For": f"10.0.0.{next(tries)}"}
            )
        )
        assert tried < TRIES
        assert_throttled(refused)


def test_a_missing_token_is_no_guess(make_config):
    with attacker_and_admin(make_config(), Clock()) as (attacker, admin):
        answers = {attacker.get("/admin/export.csv").status_code for _ in range(TRIES)}
        assert answers == {401}
        assert attacker.get("/admin/export.csv", headers=RIGHT).status_code == 200
