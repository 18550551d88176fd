"""The user-study web app: ``create_app(config)`` returns a FastAPI (ASGI) application.

Participant pages and endpoints live in ``collabrl.study.participant``, the admin's in
``collabrl.study.admin``; this module wires them together with what they share (the
``StudyContext``: database, tasks, systems, limits, secrets, templates), opens and closes the
backends and the database with the app's lifespan, and adds the hardening middleware (security
headers, body size limit). Templates are Jinja2 with autoescaping on: every text that came from
a participant or a model is escaped wherever it is shown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from collabrl.backends.stack import Roles
from collabrl.config import Config
from collabrl.secrets import register_secret
from collabrl.study import admin, participant
from collabrl.study.chat import Replies, StudySystem, build_systems
from collabrl.study.config import StudyConfig
from collabrl.study.context import StudyContext, study_context
from collabrl.study.db import open_database
from collabrl.study.security import HardeningMiddleware, RateLimiter
from collabrl.study.store import Store
from collabrl.tasks.registry import load_tasks

HERE = Path(__file__).parent
CSRF_KEY = "csrf_key"
SESSION_KEY = "admin_session_key"


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    return Jinja2Templates(env=env)


def create_app(
    config: StudyConfig,
    *,
    admin_token: str | None = None,
    systems: Mapping[str, StudySystem] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The app for ``config``. ``systems`` replaces the backends of the config (tests);
    ``admin_token`` None disables the admin pages; ``clock`` drives the rate limits (tests)."""
    register_secret(admin_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = {t.id: t for t in load_tasks(config.tasks, "tasks")}
        store = Store(open_database(config.database))
        try:
            async with AsyncExitStack() as stack:
                built = dict(systems or {})
                if not built:
                    roles = Roles(Config(roles=config.roles), use_cache=False)
                    stack.push_async_callback(roles.aclose)
                    built = build_systems(config, roles)
                replies = Replies(store, built)
                stack.push_async_callback(replies.aclose)
                limits = config.limits
                app.state.study = StudyContext(
                    config=config,
                    store=store,
                    tasks=tasks,
                    replies=replies,
                    limiter=RateLimiter(limits.messages_per_minute, limits.message_burst, clock),
                    admin_limiter=RateLimiter(
                        admin.WRONG_TOKENS_PER_MINUTE, admin.WRONG_TOKEN_BURST, clock
                    ),
                    csrf_key=await store.secret(CSRF_KEY),
                    session_key=await store.secret(SESSION_KEY),
                    admin_token=admin_token,
                    templates=_templates(),
                )
                yield
        finally:
            store.close()

    app = FastAPI(
        title=config.title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(HardeningMiddleware, max_bytes=config.limits.max_request_bytes)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(participant.router)
    app.include_router(admin.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": f"Invalid request: {fields}"}, 422)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # no icon, and no 404 in the browser's console

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        return study_context(request).page(
            request,
            "notice.html",
            heading=config.title,
            text="Please open the personal link you were given to take part.",
        )

    return app
