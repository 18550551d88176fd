"""What keeps participants apart and the app safe to put on a network.

- Links: a participant's link holds ``secrets.token_urlsafe(24)`` (192 random bits); the database
  keeps only its SHA-256, so a leaked database does not leak working links.
- CSRF: every state-changing request carries a token derived from the server's secret key and
  the participant (HMAC), in a form field or the ``X-CSRF-Token`` header, compared in constant
  time. Another site cannot read it, so it cannot forge a participant's requests.
- Rate limit: a token bucket per participant on the message endpoint (429 with Retry-After).
- Size limit: request bodies over ``max_request_bytes`` are refused with 413 before they are read.
- Headers: a strict Content-Security-Policy (scripts and styles from this server only, no inline
  code), no referrer (the link holds the token), no caching, no framing, no MIME sniffing.
- Admin: a bearer token (or the cookie set by the admin login form) compared with
  ``hmac.compare_digest`` to the value of the environment variable the config names.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token(key: str, subject: str) -> str:
    """The CSRF token for ``subject`` (a participant's token hash, or "admin")."""
    return hmac.new(key.encode(), f"csrf:{subject}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: str, subject: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(key, subject), sent)


def admin_ok(expected: str | None, sent: str | None) -> bool:
    """True when an admin token is configured and ``sent`` equals it."""
    return bool(expected) and bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())


class RateLimiter:
    """A token bucket per key: ``burst`` at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when allowed (one token taken), else the seconds until the next token."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate


class HardeningMiddleware:
    """Security headers on every response; 413 for bodies over ``max_bytes`` (pure ASGI)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send_with_headers)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # chunked bodies declare no length
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _TooLarge:
            await self._too_large(scope, receive, send_with_headers)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{math.floor(self.max_bytes / 1000)} kB"
        response = PlainTextResponse(f"request too large (limit {limit})", status_code=413)
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
