"""Logging setup: nothing that looks like an enrollment token reaches a log line."""

from __future__ import annotations

import logging
import re

from federation.tokens import hash_token, log_id

_TOKEN_IN_TEXT = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def redact_tokens(text: str) -> str:
    """Replace every 64-hex run (a token, or a hash of one) by 8 chars of its hash."""
    return _TOKEN_IN_TEXT.sub(lambda m: f"tok:{log_id(hash_token(m.group(0).lower()))}", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact_tokens(str(record.msg))
        return True


def install_redaction() -> None:
    """Attach the filter to every handler of the root and uvicorn loggers."""
    redactor = RedactTokens()
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error", "mosaic"):
        logger = logging.getLogger(name)
        logger.addFilter(redactor)
        for handler in logger.handlers:
            handler.addFilter(redactor)
