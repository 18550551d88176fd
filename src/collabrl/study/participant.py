"""What a participant can do, all under their personal link ``/p/{token}``.

The page shows the brief, the conversation so far, a pending rating and the document form; the
endpoints send a message (the reply streams back as JSON lines), retry a failed reply, rate the
interaction every ``rating_every`` turns, autosave the draft, and finish a session with the
final document and three ratings. Every handler finds the participant from the token alone and
acts only on that participant's current session, so one link can never read or write another
participant's data. State-changing requests need the participant's CSRF token; messages are
rate limited and size limited; the participant's message is stored before the model is asked.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from pydantic import BaseModel
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from collabrl.study.config import FINAL_RATINGS
from collabrl.study.context import StudyContext, study_context
from collabrl.study.security import csrf_ok, csrf_token, hash_token
from collabrl.study.store import Conflict, SessionState

router = APIRouter()
MAX_TOKEN_CHARS = 100


class TextIn(BaseModel):
    text: str


class RatingIn(BaseModel):
    turn: int
    value: int


class Caller:
    """The participant behind a link, resolved from the token."""

    def __init__(self, ctx: StudyContext, token: str, participant_id: int) -> None:
        self.ctx, self.token, self.id = ctx, token, participant_id
        self.csrf = csrf_token(ctx.csrf_key, hash_token(token))

    def check_csrf(self, sent: str | None) -> None:
        if not csrf_ok(self.ctx.csrf_key, hash_token(self.token), sent):
            raise HTTPException(403, "Missing or invalid CSRF token; reload the page.")

    def limit_rate(self) -> None:
        wait = self.ctx.limiter.take(str(self.id))
        if wait:
            seconds = math.ceil(wait)
            raise HTTPException(
                429,
                f"Too many messages; please wait {seconds} s.",
                headers={"Retry-After": str(seconds)},
            )

    async def session(self) -> SessionState:
        state = await self.ctx.store.current_session(self.id)
        if state is None:
            raise HTTPException(409, "This study is finished for your link. Thank you!")
        return state


async def caller(token: str, request: Request) -> Caller:
    ctx = study_context(request)
    found = await ctx.store.participant_id(token) if len(token) <= MAX_TOKEN_CHARS else None
    if found is None:
        raise HTTPException(404, "Unknown link.")
    return Caller(ctx, token, found)


Who = Annotated[Caller, Depends(caller)]
CsrfHeader = Annotated[str | None, Header()]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _check_text(text: str, limit: int, what: str) -> None:
    if len(text) > limit:
        raise HTTPException(413, f"The {what} is too long ({len(text)} characters; limit {limit}).")


def _status(ctx: StudyContext, state: SessionState) -> dict[str, Any]:
    """What the page needs to know after a change: turn count, rating due, finishing allowed."""
    config = ctx.config
    return {
        "turns": state.turns,
        "rating_due": state.pending_rating(config.rating_every),
        "can_finish": state.turns >= config.min_turns,
        "at_max": state.turns >= config.max_turns,
    }


def _stream(who: Caller, state: SessionState) -> Response:
    job = who.ctx.replies.start(state)

    async def lines() -> AsyncIterator[str]:
        async for event in job.events():
            if event["type"] == "done":
                event |= _status(who.ctx, await who.session())
            yield json.dumps(event) + "\n"

    return StreamingResponse(
        lines(), media_type="application/x-ndjson", headers={"X-Accel-Buffering": "no"}
    )


@router.get("/p/{token}", response_class=HTMLResponse)
async def page(token: str, request: Request) -> HTMLResponse:
    ctx = study_context(request)
    try:
        who = await caller(token, request)
    except HTTPException:
        return ctx.page(
            request,
            "notice.html",
            404,
            heading="Unknown link",
            text="This link is not valid. Please check the link you were given.",
        )
    state = await ctx.store.current_session(who.id)
    if state is None:
        return ctx.page(
            request,
            "notice.html",
            heading="Thank you!",
            text="You have completed the study. You can close this page.",
        )
    await ctx.store.mark_started(state.id)
    await ctx.store.add_event(state.id, "view", {})
    return render_chat(who, request, state)


def render_chat(
    who: Caller,
    request: Request,
    state: SessionState,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    ctx = who.ctx
    return ctx.page(
        request,
        "chat.html",
        status,
        state=state,
        task=ctx.tasks.get(state.task_id),
        csrf=who.csrf,
        base=f"/p/{who.token}",
        config=ctx.config,
        status_=_status(ctx, state),
        in_flight=ctx.replies.in_flight(state.id),
        error=error,
        form=form or {},
        final_ratings=FINAL_RATINGS,
    )


@router.post("/p/{token}/message")
async def send_message(body: TextIn, who: Who, x_csrf_token: CsrfHeader = None) -> Response:
    who.check_csrf(x_csrf_token)
    who.limit_rate()
    text = body.text.strip()
    if not text:
        return _error(422, "The message is empty.")
    _check_text(text, who.ctx.config.limits.max_message_chars, "message")
    state = await who.session()
    status = _status(who.ctx, state)
    if status["rating_due"]:
        return _error(409, "Please rate the interaction so far first.")
    if status["at_max"]:
        return _error(409, "This conversation reached its last turn; please finish the document.")
    try:
        await who.ctx.store.add_message(state.id, "user", text)
    except Conflict as refused:
        return _error(409, f"Not now: {refused}.")
    return _stream(who, await who.session())


@router.post("/p/{token}/retry")
async def retry(who: Who, x_csrf_token: CsrfHeader = None) -> Response:
    """Ask for the reply again (or follow the one in progress)."""
    who.check_csrf(x_csrf_token)
    state = await who.session()
    if not state.awaiting_reply:
        return _error(409, "There is no reply to retry.")
    if not who.ctx.replies.in_flight(state.id):
        who.limit_rate()
    return _stream(who, state)


@router.post("/p/{token}/rating")
async def rate(body: RatingIn, who: Who, x_csrf_token: CsrfHeader = None) -> Response:
    who.check_csrf(x_csrf_token)
    if not 1 <= body.value <= 10:
        return _error(422, "A rating is a whole number from 1 to 10.")
    state = await who.session()
    if state.turn_ratings.get(body.turn) is not None:
        return JSONResponse({"ok": True, "stored": False})
    if body.turn != state.pending_rating(who.ctx.config.rating_every):
        return _error(409, "No rating is due for this turn.")
    stored = await who.ctx.store.add_rating(state.id, "turn", body.turn, body.value)
    return JSONResponse({"ok": True, "stored": stored})


@router.post("/p/{token}/draft")
async def save_draft(body: TextIn, who: Who, x_csrf_token: CsrfHeader = None) -> Response:
    who.check_csrf(x_csrf_token)
    _check_text(body.text, who.ctx.config.limits.max_document_chars, "document")
    state = await who.session()
    await who.ctx.store.save_draft(state.id, body.text)
    return JSONResponse({"ok": True})


@router.post("/p/{token}/finish")
async def finish(request: Request, who: Who) -> Response:
    """The final document and ratings (an HTML form); a refusal re-shows the page, text kept."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    who.check_csrf(form.get("csrf_token"))
    state = await who.session()
    if form.get("session_id") != str(state.id):
        return RedirectResponse(f"/p/{who.token}", status_code=303)  # a repeated submit
    problem, ratings = _finish_problem(who.ctx, state, form)
    if problem:
        return render_chat(who, request, state, status=400, error=problem, form=form)
    await who.ctx.store.finish(state.id, form["document"], ratings)
    await who.ctx.store.add_event(state.id, "finish", {})
    return RedirectResponse(f"/p/{who.token}", status_code=303)


def _finish_problem(
    ctx: StudyContext, state: SessionState, form: dict[str, str]
) -> tuple[str | None, dict[str, int]]:
    document = form.get("document", "")
    if not document.strip():
        return "Please paste or write your final document before finishing.", {}
    if len(document) > ctx.config.limits.max_document_chars:
        return f"The document is too long (limit {ctx.config.limits.max_document_chars}).", {}
    if state.turns < ctx.config.min_turns:
        return f"Please work with the assistant for at least {ctx.config.min_turns} replies.", {}
    ratings = {}
    for kind in FINAL_RATINGS:
        value = form.get(f"rating_{kind}", "")
        if not value.isdigit() or not 1 <= int(value) <= 10:
            return f"Please give a rating from 1 to 10 for {kind}.", {}
        ratings[kind] = int(value)
    return None, ratings
