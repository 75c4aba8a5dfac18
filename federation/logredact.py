"""Logging setup: nothing that looks like an enrollment token reaches a log line."""

from __future__ import annotations

import logging
import re
from typing import Any

from federation.tokens import hash_token, log_id

_TOKEN_IN_TEXT = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def redact_tokens(text: str) -> str:
    """Replace every 64-hex run (a token, or a hash of one) by 8 chars of its hash."""
    return _TOKEN_IN_TEXT.sub(lambda m: f"tok:{log_id(hash_token(m.group(0).lower()))}", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_tokens(value)
    if value is None or isinstance(value, int | float):
        return value
    # Objects such as httpx.URL format through str(): redact that form if it carries a token.
    text = str(value)
    return redact_tokens(text) if _TOKEN_IN_TEXT.search(text) else value


def install_redaction() -> None:
    """Redact every log record at creation, whatever logger or handler it goes to.

    A record factory rather than a filter: filters on a logger miss records
    propagated from children (httpx logs request URLs, which carry the token).
    Arguments keep their shape: uvicorn's access formatter unpacks them.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "mosaic_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact(v) for k, v in record.args.items()}
        return record

    factory.mosaic_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
