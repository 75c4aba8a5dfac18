from __future__ import annotations

import logging

import httpx

from federation.logredact import install_redaction, redact_tokens
from federation.tokens import hash_token, new_token


def test_token_in_text_becomes_eight_chars_of_its_hash() -> None:
    token = new_token()
    redacted = redact_tokens(f"POST /api/federation/enrollment/{token} 200")
    assert token not in redacted
    assert f"tok:{hash_token(token)[:8]}" in redacted


def test_log_records_are_redacted_whatever_the_logger_and_argument_type(
    caplog: object,
) -> None:
    install_redaction()
    token = new_token()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("httpx.some.child")
    handler = Keep()
    logger.addHandler(handler)
    try:
        url = httpx.URL(f"https://b.example/api/federation/enrollment/{token}")
        logger.warning("HTTP Request: %s %s %d", "POST", url, 200)
        logger.warning(f"inline {token}")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert all(token not in r.getMessage() for r in records)
    assert records[0].getMessage().endswith(" 200")
