"""Helpers shared by the backends that call HTTP APIs (OpenAI-compatible, Anthropic).

Translating SDK exceptions into collabrl's typed errors (with the server's Retry-After), reading
the API key at call time (with the ``"EMPTY"`` placeholder for local servers), stripping
credentials from URLs before they reach messages or cache keys, and fanning out parallel
single-sample requests that are cancelled together when one fails.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import time
from collections.abc import Awaitable, Iterable, Mapping
from types import ModuleType
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from collabrl.backends.errors import (
    AttemptTimeoutError,
    BackendError,
    RequestRejectedError,
    TransientError,
    error_for_status,
)
from collabrl.secrets import read_secret

LOCAL_KEY_PLACEHOLDER = "EMPTY"

_T = TypeVar("_T")


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` integer shares that sum to it, larger shares first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def public_url(url: str) -> str:
    """``url`` without user:password credentials, safe for messages and cache keys."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


@functools.lru_cache(maxsize=64)
def is_local_url(url: str | None) -> bool:
    """True for ``localhost`` and loopback, private or link-local IP addresses."""
    host = urlsplit(url).hostname if url else None
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def resolve_api_key(env_var: str, base_url: str | None, where: str) -> str:
    """The key from ``env_var`` now; ``"EMPTY"`` for a local server when the variable is unset."""
    try:
        return read_secret(env_var)
    except KeyError as missing:
        if is_local_url(base_url):
            return LOCAL_KEY_PLACEHOLDER
        raise RequestRejectedError(f"{missing.args[0]}; needed for {where}") from None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's wait hint: ``retry-after-ms``, or ``Retry-After`` in seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass  # malformed: fall back to Retry-After
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not a number: an HTTP date
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backend_error(error: BaseException, sdk: ModuleType, where: str) -> BackendError:
    """Translate an ``openai``/``anthropic`` SDK error (the same class names) into a typed one."""
    if isinstance(error, (sdk.APITimeoutError, asyncio.TimeoutError)):
        return AttemptTimeoutError(f"no response within the attempt timeout from {where}")
    if isinstance(error, sdk.APIStatusError):
        status = error.status_code
        labels = [getattr(error, a, None) for a in ("type", "code", "error_code")]
        detail = ", ".join(dict.fromkeys(str(x) for x in labels if x))
        text = error.message.removeprefix(f"Error code: {status} - ")  # the SDK's prefix
        message = f"HTTP {status} from {where}: {text}" + (f" ({detail})" if detail else "")
        return error_for_status(status, message, retry_after_seconds(error.response.headers))
    if isinstance(error, sdk.APIConnectionError):
        cause = error.__cause__
        reason = error.message
        if cause is not None:
            reason = type(cause).__name__ + (f": {cause}" if str(cause) else "")
        return TransientError(f"connection to {where} failed: {reason}")
    return TransientError(f"invalid response from {where}: {type(error).__name__}: {error}")


async def gather_or_cancel(awaitables: Iterable[Awaitable[_T]]) -> list[_T]:
    """Await all concurrently; on the first failure cancel the others and raise it."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
