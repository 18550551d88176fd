"""Keeping API keys out of everything collabrl writes.

Configs name the *environment variable* that holds a key, never the key. The key is read at call
time with :func:`read_secret`, which also registers the value so that :func:`redact` can replace
it wherever it might surface: exception messages, log records (every record, from any library,
through :func:`install_log_redaction`), and records written to disk.
"""

from __future__ import annotations

import logging
import os
import threading

_MASK = "***"
_lock = threading.Lock()
_known: set[str] = set()
_installed = False

# Variables whose values are treated as secrets even if no backend read them yet.
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_ACCESS_KEY")


def register_secret(value: str | None) -> None:
    """Remember a value that must never be written anywhere."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def register_secret_env() -> None:
    """Register the values of all environment variables that look like credentials."""
    for name, value in os.environ.items():
        if name.upper().endswith(SECRET_ENV_SUFFIXES):
            register_secret(value)


def read_secret(env_var: str) -> str:
    """The value of ``env_var``; raises a message that names the variable (not the value)."""
    value = os.environ.get(env_var)
    if not value:
        raise KeyError(f"environment variable {env_var} is not set (it should hold the API key)")
    register_secret(value)
    return value


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    if not _known or not text:
        return text
    with _lock:
        secrets = sorted(_known, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def install_log_redaction() -> None:
    """Redact secrets from every log record created from now on, whichever logger made it."""
    global _installed
    if _installed:
        return
    register_secret_env()
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if _known:
            try:
                message = record.getMessage()
            except Exception:  # a malformed log call: logging reports it at emit time
                return record
            cleaned = redact(message)
            if cleaned != message or record.args:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
