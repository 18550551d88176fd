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
- Admin: a bearer token compared with ``hmac.compare_digest`` to the value of the environment
  variable the config names. The login form never puts that token in a cookie (browser storage,
  proxy logs and screenshots leak cookies): it sets a session, ``EXPIRY.HMAC(key, EXPIRY +
  sha256(token))``, keyed by a secret the server keeps in its database and never sends, so a
  copied cookie neither gives the token back nor lets anyone test guesses of it offline. It is
  refused once EXPIRY (Unix seconds) has passed and by a server started with another token, so
  rotating the token ends every session.
- Admin guessing: every check of an admin token (bearer header, admin cookie, login form) is
  throttled per client, the connecting address: a token bucket of wrong tokens per address,
  shared by the three ways in; while it is empty that address gets 429 with Retry-After and its
  tokens are not even compared. Right tokens and requests without one cost nothing, and another
  address's wrong guesses never block the real admin. X-Forwarded-For is not read here (any
  client can write it); ``collabrl study serve`` (uvicorn) puts its address in the connection's
  place only for a proxy it trusts, loopback by default (``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
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


def admin_session(key: str, token: str, expiry: int) -> str:
    """An admin session valid until ``expiry`` (Unix seconds), made with the server's session
    ``key`` for the admin ``token``."""
    return f"{expiry}.{_session_mac(key, token, str(expiry))}"


def admin_session_ok(
    key: str, token: str | None, sent: str | None, now: float, lifetime: float
) -> bool:
    """True when ``sent`` is a session made with ``key`` for ``token`` that expires within
    ``lifetime`` seconds after ``now`` (a shortened lifetime applies to sessions made before)."""
    if not token or not sent:
        return False
    expiry, _, mac = sent.partition(".")
    if not (expiry.isascii() and expiry.isdigit()) or not now < int(expiry) <= now + lifetime:
        return False
    return hmac.compare_digest(_session_mac(key, token, expiry).encode(), mac.encode())


def _session_mac(key: str, token: str, expiry: str) -> str:
    message = f"admin-session:{expiry}:".encode() + hashlib.sha256(token.encode()).digest()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


class RateLimiter:
    """A token bucket per key: ``burst`` at once, refilled at ``per_minute``.

    Memory stays bounded, as keys may come from anyone (client addresses): a bucket untouched
    long enough to be full again is forgotten (a fresh one is the same), and beyond ``max_keys``
    the least recently used bucket goes first, which only ever favours its owner.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ):
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are tracked now."""
        return len(self._buckets)

    def wait(self, key: str) -> float:
        """0 when ``key`` has a token now, else the seconds until it has; takes nothing."""
        tokens = self._tokens(key, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: str) -> float:
        """0 when allowed (one token taken), else the seconds until the next token."""
        now = self._clock()
        tokens = self._tokens(key, now)
        allowed = tokens >= 1
        self._store(key, tokens - 1 if allowed else tokens, now)
        return 0.0 if allowed else (1 - tokens) / self.rate

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        refilled = self.burst / self.rate  # seconds after which any bucket is full again
        while self._buckets:
            _, last = next(iter(self._buckets.values()))
            if len(self._buckets) <= self.max_keys and now - last < refilled:
                break
            self._buckets.popitem(last=False)


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
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in SECURITY_HEADERS
                ]
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
