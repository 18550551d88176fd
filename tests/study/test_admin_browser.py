"""The admin logs in, is kept out after a token rotation, and logs out, in headless Chromium.

Against the real server (``collabrl study serve`` in a subprocess), with the
Content-Security-Policy in force: the admin pages need no script. The browser must keep the
session cookie, never the token, and the cookie must stop working once the server restarts with
another token. Needs Debian's chromium and the Python ``playwright`` package; skipped without.
"""

from __future__ import annotations

import os

import pytest

from collabrl.study.admin import COOKIE

from .conftest import serving, study_data

pytestmark = pytest.mark.slow
TOKEN_ENV = "COLLABRL_STUDY_ADMIN_TOKEN"
FIRST, SECOND = "first-admin-token-for-tests", "second-admin-token-for-tests"


def log_in(page, url: str, token: str) -> None:
    page.goto(url + "/admin")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#progress")


def admin_cookie(context) -> dict:
    (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
    return cookie


def test_login_rotation_and_logout(browser, tmp_path):
    env = {**os.environ, TOKEN_ENV: FIRST}
    with serving(tmp_path, study_data(tmp_path), env=env) as server:
        context = browser.new_context()
        page = context.new_page()
        log_in(page, server.url, FIRST)
        cookie = admin_cookie(context)
        assert FIRST not in cookie["value"] and cookie["httpOnly"] and cookie["expires"] > 0
        page.goto(server.url + "/admin")
        assert page.locator("#progress").count() == 1

        server.env = {**os.environ, TOKEN_ENV: SECOND}
        server.restart()
        page.goto(server.url + "/admin")
        assert page.locator("input[name=token]").count() == 1  # the old session is refused
        log_in(page, server.url, SECOND)

        page.click("text=Log out")
        page.wait_for_selector("input[name=token]")
        assert [c for c in context.cookies() if c["name"] == COOKIE] == []
        context.close()
