"""Typed failures of a model call, so that retry decisions are made in one place.

Backends translate whatever their SDK raises into one of these. ``retryable`` tells the retry
wrapper whether trying again can help; ``retry_after`` carries a server's Retry-After hint.
Messages pass through secret redaction before they are stored, so they are safe to log.
"""

from __future__ import annotations

from collabrl.secrets import redact


class BackendError(Exception):
    """A model call that did not produce a usable answer."""

    retryable: bool = False
    kind: str = "error"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(redact(message))

    def __reduce__(self):  # keep pickling/copying working with keyword-only fields
        return (_rebuild, (type(self), str(self), self.status, self.retry_after))

    @property
    def reason(self) -> str:
        """A short, stable label for records and tables: ``kind`` plus the HTTP status if any."""
        return f"{self.kind}:{self.status}" if self.status else self.kind


def _rebuild(cls, message, status, retry_after):
    return cls(message, status=status, retry_after=retry_after)


class RateLimitedError(BackendError):
    """429: too many requests; wait (``retry_after`` when the server said) and retry."""

    retryable = True
    kind = "rate_limited"


class QuotaExceededError(BackendError):
    """The account is out of credit or quota: retrying cannot help."""

    kind = "quota_exceeded"


class RequestRejectedError(BackendError):
    """400/401/403/404/422 and similar: the request itself is wrong; never retried."""

    kind = "rejected"


class TransientError(BackendError):
    """408/409/5xx, connection resets: likely to succeed if tried again."""

    retryable = True
    kind = "transient"


class AttemptTimeoutError(TransientError):
    """One attempt took longer than the per-attempt timeout."""

    kind = "attempt_timeout"


class DeadlineExceededError(BackendError):
    """The overall deadline for a call (all attempts and waits) passed."""

    kind = "deadline_exceeded"


class IncompleteOutputError(TransientError):
    """The model's output was cut (broken stream, unknown finish): never a finished turn."""

    kind = "incomplete"


class ReplayMissError(BackendError):
    """``cache.mode: replay`` and the recording has no answer for this request: nothing is sent
    to the model, and trying again cannot help."""

    kind = "replay_miss"


def error_for_status(status: int, message: str, retry_after: float | None = None) -> BackendError:
    """Map an HTTP status (and body text) to the right typed error."""
    lowered = message.lower()
    if "insufficient_quota" in lowered or (status in (402, 429) and "quota" in lowered):
        return QuotaExceededError(message, status=status)
    if status == 429:
        return RateLimitedError(message, status=status, retry_after=retry_after)
    if status in (408, 409) or status >= 500:
        return TransientError(message, status=status, retry_after=retry_after)
    return RequestRejectedError(message, status=status)
