"""The listeners' log hygiene: no query string in access lines, and one line per
interval for messages a hostile client can make the process repeat."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterator

import pytest

from api.serverlogs import (
    AccessLogQueryRedaction,
    RepeatedLineLimit,
    install_listener_log_filters,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        formatter = logging.Formatter("%(message)s")
        return [formatter.format(record) for record in self.records]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def asyncio_lines(clock: Clock) -> Iterator[Keep]:
    """asyncio's own logger with only a fresh limit (the process-wide one, installed by
    any listener built earlier, set aside) and a handler that keeps what passes."""
    logger = logging.getLogger("asyncio")
    installed = [f for f in logger.filters if isinstance(f, RepeatedLineLimit)]
    for existing in installed:
        logger.removeFilter(existing)
    limit = RepeatedLineLimit(clock=clock)
    keep = Keep()
    logger.addFilter(limit)
    logger.addHandler(keep)
    try:
        yield keep
    finally:
        logger.removeHandler(keep)
        logger.removeFilter(limit)
        for existing in installed:
            logger.addFilter(existing)


def fail_accept(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """What asyncio's selector loop does on EMFILE from accept(), every time it retries."""
    loop.call_exception_handler(
        {
            "message": "socket.accept() out of system resource",
            "exception": OSError(errno.EMFILE, "Too many open files"),
            "socket": sock,
        }
    )


def test_a_flood_of_accept_errors_is_one_line_per_interval_without_traceback(
    asyncio_lines: Keep, clock: Clock
) -> None:
    loop = asyncio.new_event_loop()
    try:
        with socket.socket() as sock:
            for _ in range(500):
                fail_accept(loop, sock)
                clock.now += 0.01  # 5 s of failures
            assert len(asyncio_lines.records) == 1
            clock.now += 5.5  # past the 10 s interval
            fail_accept(loop, sock)
    finally:
        loop.close()
    first, second = asyncio_lines.lines()
    assert first == "socket.accept() out of system resource: [Errno 24] Too many open files"
    assert second.startswith(first) and "499 more like this suppressed" in second
    assert all(record.exc_info is None for record in asyncio_lines.records)
    assert "Traceback" not in "\n".join(asyncio_lines.lines())


def test_each_kind_has_its_own_interval_and_other_lines_pass_untouched(clock: Clock) -> None:
    limit = RepeatedLineLimit(["refused a connection", "dropped a slow connection"], clock=clock)

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("x", logging.WARNING, __file__, 1, msg, args, None)

    assert limit.filter(record("refused a connection with 503"))
    assert limit.filter(record("dropped a slow connection: %s not complete", "request body"))
    assert not limit.filter(record("refused a connection with 503"))
    untouched = record("worker on task queue %s", "q")
    assert limit.filter(untouched) and untouched.getMessage() == "worker on task queue q"
    clock.now += 10.0
    again = record("refused a connection with 503")
    assert limit.filter(again)
    assert again.getMessage().endswith("(1 more like this suppressed; at most one line per 10s)")


def access_record(path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 401),
        None,
    )


def test_the_access_line_keeps_path_and_status_but_not_the_query() -> None:
    record = access_record("/api/admin/users?token=s3cret&status=active")
    assert AccessLogQueryRedaction().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /api/admin/users?[redacted] HTTP/1.1" 401'


def test_an_access_line_without_a_query_is_unchanged() -> None:
    record = access_record("/healthz")
    AccessLogQueryRedaction().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /healthz HTTP/1.1" 401'


def test_installing_twice_attaches_each_filter_once() -> None:
    install_listener_log_filters()
    install_listener_log_filters()
    access = logging.getLogger("uvicorn.access").filters
    assert sum(isinstance(f, AccessLogQueryRedaction) for f in access) == 1
    for name in ("asyncio", "uvicorn.error", "mosaic.api.connections"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RepeatedLineLimit) for f in filters) == 1, name
