"""What every request handler of the study app shares, built once when the app starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from collabrl.study.chat import Replies
from collabrl.study.config import StudyConfig
from collabrl.study.security import RateLimiter
from collabrl.study.store import Store
from collabrl.types import Task


@dataclass
class StudyContext:
    """Everything a request handler needs, built once when the app starts."""

    config: StudyConfig
    store: Store
    tasks: Mapping[str, Task]
    replies: Replies
    limiter: RateLimiter
    admin_limiter: RateLimiter  # wrong admin tokens, per client address
    csrf_key: str
    session_key: str  # signs admin sessions; kept in the database, never sent
    admin_token: str | None
    templates: Jinja2Templates

    def page(self, request: Request, name: str, status: int = 200, **values) -> HTMLResponse:
        values.setdefault("title", self.config.title)
        return self.templates.TemplateResponse(request, name, values, status_code=status)


def study_context(request: Request) -> StudyContext:
    return request.app.state.study
