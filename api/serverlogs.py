"""Log hygiene for the listeners: no query string in the access log, and at most one
line per interval for the messages a hostile client can make the process repeat
(failed accepts, refused or dropped connections, malformed requests)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

REDACTED_QUERY = "?[redacted]"
REPEAT_INTERVAL_SECONDS = 10.0

# Message prefixes (a log record's format string) that arrive once per hostile socket.
NOISY_MESSAGES = (
    # asyncio, once per failed accept(): EMFILE, ENFILE, ENOBUFS, ENOMEM; with a traceback.
    "socket.accept() out of system resource",
    # uvicorn.error, once per request.
    "Exceeded concurrency limit.",
    "Invalid HTTP request received.",
    "Unsupported upgrade request.",
    "No supported WebSocket library detected.",
    # api.connections, once per refused, evicted or timed-out connection.
    "refused a connection",
    "evicted a connection",
    "dropped a slow connection",
)
_NOISY_LOGGERS = ("asyncio", "uvicorn.error", "mosaic.api.connections")
_ACCESS_LOGGER = "uvicorn.access"


class AccessLogQueryRedaction(logging.Filter):
    """Replace the query string of uvicorn's access lines: a token put in a URL by
    mistake must not reach the log. Path, method and status stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' with (client, method, path?query, version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _ = args[2].partition("?")
            if sep:
                record.args = (*args[:2], path + REDACTED_QUERY, *args[3:])
        return True


class RepeatedLineLimit(logging.Filter):
    """Let one record per ``interval`` through for each noisy message kind, as one line
    (no traceback) that says how many of its kind were suppressed since the last one."""

    def __init__(
        self,
        prefixes: Sequence[str] = NOISY_MESSAGES,
        *,
        interval: float = REPEAT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = tuple(prefixes)
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        kind = next((p for p in self._prefixes if record.msg.startswith(p)), None)
        if kind is None:
            return True
        with self._lock:
            now = self._clock()
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        record.msg = _one_line(record, suppressed, self._interval)
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def _one_line(record: logging.LogRecord, suppressed: int, interval: float) -> str:
    line = record.getMessage().splitlines()[0]
    if record.exc_info and record.exc_info[1] is not None:
        line += f": {record.exc_info[1]}"
    if suppressed:
        line += f" ({suppressed} more like this suppressed; at most one line per {interval:g}s)"
    return line


_installed = threading.Lock()


def install_listener_log_filters() -> None:
    """Attach the access-log redaction and the repeated-line limit (idempotent)."""
    with _installed:
        access = logging.getLogger(_ACCESS_LOGGER)
        if not any(isinstance(f, AccessLogQueryRedaction) for f in access.filters):
            access.addFilter(AccessLogQueryRedaction())
        limit = RepeatedLineLimit()
        for name in _NOISY_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, RepeatedLineLimit) for f in logger.filters):
                # One shared instance: a kind is counted once whichever logger repeats it.
                logger.addFilter(limit)
