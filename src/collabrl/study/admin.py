"""The admin pages: progress per system, and the data as JSONL or CSV.

Access needs the admin token, the value of the environment variable the config names
(``admin_token_env``): as ``Authorization: Bearer TOKEN`` (scripts, curl) or through the login
form, which sets an HttpOnly, SameSite=Strict cookie scoped to ``/admin`` holding a session
derived from the token, never the token itself (``collabrl.study.security.admin_session``); it
lasts ``admin_session_hours`` and the logout button clears it. Without the variable the admin
pages are disabled. Links of participants are never shown here: the database only holds their
hashes (``collabrl study invite`` prints them once, when they are created).

Wrong tokens are throttled per client address, however they were sent (header, cookie, form);
a wrong or expired session cookie counts as a wrong token. After ``WRONG_TOKEN_BURST`` of them
an address waits (429 with Retry-After), refilled at ``WRONG_TOKENS_PER_MINUTE``; other
addresses, the real admin's among them, are not affected. Sessions expire by the wall clock,
``session_clock`` (Unix seconds), which tests replace.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from collabrl.study.context import StudyContext, study_context
from collabrl.study.export import FINAL_KINDS, to_csv, to_jsonl
from collabrl.study.security import (
    admin_ok,
    admin_session,
    admin_session_ok,
    csrf_ok,
    csrf_token,
)

router = APIRouter(prefix="/admin")
COOKIE = "collabrl_admin"
LOGIN_SUBJECT = "admin-login"
LOGOUT_SUBJECT = "admin-logout"
WRONG_TOKEN_BURST = 5
WRONG_TOKENS_PER_MINUTE = 5
session_clock: Callable[[], float] = time.time


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _session_seconds(ctx: StudyContext) -> float:
    return ctx.config.admin_session_hours * 3600


def _token_right(ctx: StudyContext, sent: str) -> bool:
    return admin_ok(ctx.admin_token, sent)


def _session_right(ctx: StudyContext, sent: str) -> bool:
    return admin_session_ok(
        ctx.session_key, ctx.admin_token, sent, session_clock(), _session_seconds(ctx)
    )


def _client(request: Request) -> str:
    """Who is guessing: the address of the connection (see ``collabrl.study.security``)."""
    return request.client.host if request.client else "unknown"


def _guess_ok(
    ctx: StudyContext,
    request: Request,
    sent: str | None,
    right: Callable[[StudyContext, str], bool],
) -> bool:
    """Whether ``sent`` passes ``right`` (token or session); raises 429 while this client is
    throttled.

    The throttle is asked before ``sent`` is checked, so a throttled client learns nothing,
    not even from the right token. Only a wrong value counts against its client.
    """
    client = _client(request)
    wait = ctx.admin_limiter.wait(client)
    if wait:
        raise HTTPException(
            429,
            f"Too many wrong admin tokens from this address; try again in {math.ceil(wait)} s.",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    if sent and right(ctx, sent):
        return True
    if sent:
        ctx.admin_limiter.take(client)
    return False


def _authorised(request: Request) -> StudyContext:
    ctx = study_context(request)
    if ctx.admin_token is None:
        raise HTTPException(503, f"Admin pages are disabled: set {ctx.config.admin_token_env}.")
    bearer = _bearer(request)
    if bearer is not None:
        ok = _guess_ok(ctx, request, bearer, _token_right)
    else:
        ok = _guess_ok(ctx, request, request.cookies.get(COOKIE), _session_right)
    if not ok:
        raise HTTPException(401, "Admin token required.", headers={"WWW-Authenticate": "Bearer"})
    return ctx


def _login_page(ctx: StudyContext, request: Request, status: int = 200, error: str | None = None):
    return ctx.page(
        request,
        "admin_login.html",
        status,
        error=error,
        csrf=csrf_token(ctx.csrf_key, LOGIN_SUBJECT),
    )


@router.get("", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    ctx = study_context(request)
    try:
        _authorised(request)
    except HTTPException as refused:
        if refused.status_code == 401:
            return _login_page(ctx, request)
        page = ctx.page(
            request, "notice.html", refused.status_code, heading="Admin", text=str(refused.detail)
        )
        page.headers.update(refused.headers or {})
        return page
    rows = await ctx.store.progress()
    invited = await ctx.store.count_participants()
    return ctx.page(
        request,
        "admin.html",
        rows=rows,
        invited=invited,
        kinds=FINAL_KINDS,
        csrf=csrf_token(ctx.csrf_key, LOGOUT_SUBJECT),
    )


async def _checked_form(request: Request, subject: str) -> tuple[StudyContext, dict]:
    """The app's context and the posted form, once its CSRF token for ``subject`` is checked."""
    ctx = study_context(request)
    form = await request.form()
    if not csrf_ok(ctx.csrf_key, subject, str(form.get("csrf_token", ""))):
        raise HTTPException(403, "Missing or invalid CSRF token; reload the page.")
    return ctx, dict(form)


@router.post("/login")
async def login(request: Request) -> Response:
    ctx, form = await _checked_form(request, LOGIN_SUBJECT)
    token = str(form.get("token", ""))
    try:
        right = _guess_ok(ctx, request, token, _token_right)
    except HTTPException as refused:
        page = _login_page(ctx, request, refused.status_code, str(refused.detail))
        page.headers.update(refused.headers or {})
        return page
    if not right:
        return _login_page(ctx, request, 401, "Wrong token.")
    lifetime = _session_seconds(ctx)
    session = admin_session(ctx.session_key, token, math.floor(session_clock() + lifetime))
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(
        COOKIE,
        session,
        max_age=math.floor(lifetime),
        httponly=True,
        samesite="strict",
        path="/admin",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Clears the session cookie in this browser (rotate the token to end every session)."""
    await _checked_form(request, LOGOUT_SUBJECT)
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", path="/admin")
    return response


@router.get("/export.jsonl")
async def export_jsonl(request: Request) -> Response:
    records = await _authorised(request).store.records()
    return _download(to_jsonl(records), "study.jsonl", "application/x-ndjson")


@router.get("/export.csv")
async def export_csv(request: Request) -> Response:
    records = await _authorised(request).store.records()
    return _download(to_csv(records), "study.csv", "text/csv")


def _download(text: str, name: str, media_type: str) -> Response:
    return Response(
        text,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
