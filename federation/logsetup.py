"""Process logging: plain text for people, JSON lines for machines, a request id on both.

The request id set by the API (``X-Request-ID``) travels in workflow inputs and
memos and lands in audit rows; here it is attached to every log record made
while handling that request, so one id finds a request in logs, audit and UI.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from federation.logredact import install_redaction

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mosaic_request_id", default=None
)
# Extra context a process can add (the worker adds the workflow and activity it runs).
context_providers: list[Callable[[], dict[str, Any]]] = []


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        for provider in context_providers:
            for key, value in provider().items():
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id and any context."""

    _CONTEXT = ("request_id", "workflow_id", "activity")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in self._CONTEXT:
            value = getattr(record, key, None)
            if value and value != "-":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Root handler in the chosen format, with redaction and the request-id context."""
    install_redaction()
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own handlers would print every line twice; let records reach ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
