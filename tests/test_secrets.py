"""Secrets never leave the process: redaction of messages, log records and errors."""

import logging

import pytest

from collabrl import secrets
from collabrl.backends.errors import RequestRejectedError

CANARY = "sk-canary-0123456789abcdef"


def test_read_secret_names_the_variable_not_the_value(monkeypatch):
    monkeypatch.delenv("COLLABRL_TEST_KEY", raising=False)
    with pytest.raises(KeyError, match="COLLABRL_TEST_KEY"):
        secrets.read_secret("COLLABRL_TEST_KEY")
    monkeypatch.setenv("COLLABRL_TEST_KEY", CANARY)
    assert secrets.read_secret("COLLABRL_TEST_KEY") == CANARY
    assert secrets.redact(f"Bearer {CANARY}!") == "Bearer ***!"


def test_errors_redact_their_message():
    secrets.register_secret(CANARY)
    error = RequestRejectedError(f"Incorrect API key provided: {CANARY}", status=401)
    assert CANARY not in str(error) and CANARY not in repr(error)


def test_log_records_from_any_logger_are_redacted(caplog):
    secrets.register_secret(CANARY)
    secrets.install_log_redaction()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("httpx2.somewhere").debug("header Authorization: Bearer %s", CANARY)
        try:
            raise RuntimeError(f"failed with {CANARY}")
        except RuntimeError:
            logging.getLogger("collabrl.x").exception("crash")
    assert "Bearer ***" in caplog.text
    assert CANARY not in caplog.text


def test_env_credentials_are_registered(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_API_KEY", "canary-env-value")
    secrets.register_secret_env()
    assert secrets.redact("x canary-env-value y") == "x *** y"
