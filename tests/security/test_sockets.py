"""Hostile sockets against a listener built by ``api.server.build_server``, served by
real uvicorn: slow headers, a body that never ends, more connections than the cap,
and a token in a query string that must not reach the access log."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.connections import SERVICE_UNAVAILABLE
from api.server import build_server
from federation.settings import Settings
from tests.conftest import make_settings
from tests.support.listeners import (
    RecordingApp,
    assert_cut_off,
    closed_at,
    read_response,
    serving,
    still_open,
)
from tests.support.stepca import free_port

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
CAP = 16  # the smallest MOSAIC_MAX_CONNECTIONS allowed


def socket_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mosaic_header_timeout_seconds": HEADER_TIMEOUT,
        "mosaic_body_timeout_seconds": BODY_TIMEOUT,
        "mosaic_max_connections": CAP,
    }
    values.update(overrides)
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", tmp_path, **values)


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[tuple[RecordingApp, int]]:
    app = RecordingApp()
    port = free_port()
    server = build_server(app, host="127.0.0.1", port=port, settings=socket_settings(tmp_path))
    async with serving(server):
        yield app, port
    app.release.set()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, writer, asyncio.get_running_loop().time()


async def test_headers_sent_slower_than_the_header_timeout_are_cut_off(
    listener: tuple[RecordingApp, int],
) -> None:
    app, port = listener
    reader, writer, opened = await connect(port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        # A byte every 100 ms: each arrives well within the timeout, the headers never do.
        for _ in range(50):
            await asyncio.sleep(0.1)
            writer.write(b"X")
            await writer.drain()

    trickling = asyncio.create_task(trickle())
    try:
        await assert_cut_off(reader, since=opened, after=HEADER_TIMEOUT)
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
        writer.close()
    assert app.requests == []


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    listener: tuple[RecordingApp, int],
) -> None:
    _, port = listener
    reader, writer, opened = await connect(port)
    await assert_cut_off(reader, since=opened, after=HEADER_TIMEOUT)
    writer.close()


async def test_on_a_kept_alive_connection_the_header_clock_starts_at_the_next_first_byte(
    listener: tuple[RecordingApp, int],
) -> None:
    app, port = listener
    reader, writer, _ = await connect(port)
    writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    # Idle for twice the header timeout (within uvicorn's 5 s keep-alive): not a slow request.
    await asyncio.sleep(2 * HEADER_TIMEOUT)
    writer.write(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader))[0] == 200

    writer.write(b"GET /three HTTP/1.1\r\nHost: x\r\n")
    started = asyncio.get_running_loop().time()
    await assert_cut_off(reader, since=started, after=HEADER_TIMEOUT)
    writer.close()
    assert app.requests == ["/one", "/two"]


async def test_a_chunked_body_that_never_ends_is_cut_off_after_the_body_timeout(
    listener: tuple[RecordingApp, int],
) -> None:
    app, port = listener
    reader, writer, _ = await connect(port)
    writer.write(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    started = asyncio.get_running_loop().time()
    await assert_cut_off(reader, since=started, after=BODY_TIMEOUT)
    writer.close()
    # The app was reading the body: it sees the client go, and answers nothing.
    assert app.requests == ["/upload"] and app.disconnects == ["/upload"]


async def test_a_slow_but_timely_body_is_served(listener: tuple[RecordingApp, int]) -> None:
    _, port = listener
    reader, writer, _ = await connect(port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    await asyncio.sleep(BODY_TIMEOUT / 2)
    writer.write(b"def")
    status, body = await read_response(reader)
    writer.close()
    assert status == 200 and isinstance(body, dict) and body["size"] == 6


async def test_over_the_cap_with_every_connection_busy_the_newcomer_gets_503_not_the_app(
    listener: tuple[RecordingApp, int],
) -> None:
    app, port = listener
    busy = [await connect(port) for _ in range(CAP)]
    for _, writer, _ in busy:
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(app.wait_for_requests(CAP), timeout=5)

    reader, writer, opened = await connect(port)
    refused = await asyncio.wait_for(reader.read(), timeout=2)
    closed = asyncio.get_running_loop().time()
    writer.close()
    assert refused == SERVICE_UNAVAILABLE and closed - opened < 0.5
    assert len(app.requests) == CAP

    app.release.set()
    for reader, writer, _ in busy:
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_when_full_the_connection_waiting_longest_for_a_request_gives_way(
    tmp_path: Path,
) -> None:
    app = RecordingApp()
    port = free_port()
    # A long header timeout: only the cap can close the idle sockets here.
    settings = socket_settings(tmp_path, mosaic_header_timeout_seconds=30)
    async with serving(build_server(app, host="127.0.0.1", port=port, settings=settings)):
        waiting = []
        for _ in range(CAP):
            reader, writer, _ = await connect(port)
            writer.write(b"GET /never HTTP/1.1\r\nHost: x\r\n")
            await writer.drain()
            waiting.append((reader, writer))
            await asyncio.sleep(0.01)  # a definite order of arrival

        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{port}/real")
        assert response.status_code == 200

        oldest, second = waiting[0][0], waiting[1][0]
        await closed_at(oldest, within=2)
        assert await still_open(second)
        for _, writer in waiting:
            writer.close()
    assert app.requests == ["/real"]


async def test_a_token_in_a_query_string_never_reaches_the_access_log(tmp_path: Path) -> None:
    settings = socket_settings(tmp_path)
    app = create_app(settings)
    port = free_port()
    # Not the real admin token: httpx logs the URL it requests, and the session's log
    # scan (test_no_secrets_leak) rightly fails on the admin token anywhere.
    secret = f"SECRET{secrets.token_hex(16)}"
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep = Keep()
    logging.getLogger("uvicorn.access").addHandler(keep)
    try:
        async with serving(build_server(app, host="127.0.0.1", port=port, settings=settings)):
            async with httpx.AsyncClient() as http:
                response = await http.get(
                    f"http://127.0.0.1:{port}/api/admin/users",
                    params={"token": secret, "status": "active"},
                )
    finally:
        logging.getLogger("uvicorn.access").removeHandler(keep)
        await app.state.gateway.close()
    assert response.status_code == 401  # the API refuses a token in the query
    assert len(lines) == 1
    assert secret not in lines[0] and "active" not in lines[0]
    assert '"GET /api/admin/users?[redacted] HTTP/1.1" 401' in lines[0]
