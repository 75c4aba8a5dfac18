"""Request protection on a dedicated app with small limits: the per-client rate
limit on the enrollment routes, and the body size cap on every route."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message, Receive, Scope, Send

from api.app import create_app
from api.protection import RATE_LIMITED, EnrollmentRateLimit
from federation.tokens import hash_token, log_id
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.dbsnap import snapshot

BURST = 3
MAX_BODY = 4096
UNKNOWN_TOKEN = "0" * 64
ONE_MIB = 1024 * 1024

ClientFor = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def protected_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The real app on this lane's database, with a burst of 3 and 1 request/minute."""
    settings = make_settings(
        database_url,
        tmp_path,
        mosaic_enroll_rate_per_minute=1,
        mosaic_enroll_burst=BURST,
        mosaic_max_body_bytes=MAX_BODY,
    )
    app = create_app(settings)
    yield app
    await app.state.gateway.close()


@pytest.fixture
def client_at(protected_app: FastAPI) -> ClientFor:
    """An admin-authenticated client whose requests come from the given address."""

    @asynccontextmanager
    async def open_client(address: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=protected_app, client=(address, 123))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as http:
            yield http

    return open_client


async def _preflight(http: httpx.AsyncClient, token: str = UNKNOWN_TOKEN) -> httpx.Response:
    return await http.get(f"/api/federation/enrollment/{token}")


async def test_rate_limit_answers_429_with_retry_after_after_the_burst(
    client_at: ClientFor, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_at("10.0.0.1") as http:
        for _ in range(BURST):
            assert (await _preflight(http)).status_code == 404
        with caplog.at_level(logging.WARNING, logger="mosaic.api.protection"):
            limited = await _preflight(http)
            again = await http.post(
                f"/api/federation/enrollment/{UNKNOWN_TOKEN}", json={"csrPem": "x"}
            )
    assert limited.status_code == 429
    assert limited.json() == {"detail": RATE_LIMITED}
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    assert again.status_code == 429  # POST shares the bucket and never reaches the workflow
    # One log line per limited episode, naming the token by 8 chars of its hash only.
    lines = [r.getMessage() for r in caplog.records if r.name == "mosaic.api.protection"]
    assert len(lines) == 1, lines
    assert log_id(hash_token(UNKNOWN_TOKEN)) in lines[0] and UNKNOWN_TOKEN not in lines[0]


async def test_another_client_address_is_not_affected(client_at: ClientFor) -> None:
    async with client_at("10.0.0.1") as first, client_at("10.0.0.2") as second:
        for _ in range(BURST + 2):
            await _preflight(first)
        assert (await _preflight(first)).status_code == 429
        for _ in range(BURST):
            assert (await _preflight(second)).status_code == 404
        assert (await _preflight(second)).status_code == 429


async def test_admin_routes_are_not_rate_limited(client_at: ClientFor) -> None:
    async with client_at("10.0.0.3") as http:
        for _ in range(BURST + 1):
            await _preflight(http)
        assert (await _preflight(http)).status_code == 429
        for _ in range(4 * BURST):
            assert (await http.get("/api/admin/users")).status_code == 200
            assert (await http.get("/api/admin/federation/peers")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200


async def test_requests_to_other_paths_do_not_count(client_at: ClientFor) -> None:
    async with client_at("10.0.0.4") as http:
        for _ in range(4 * BURST):
            assert (await http.get("/api/admin/federation/grants")).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
            # A path that only starts with the same letters is not an enrollment route.
            assert (await http.get("/api/federation/enrollmentx")).status_code == 404
        codes = [(await _preflight(http)).status_code for _ in range(BURST + 1)]
    assert codes == [404] * BURST + [429]


async def test_one_mib_body_is_413_and_changes_nothing(
    client_at: ClientFor, db_engine: AsyncEngine
) -> None:
    before = await snapshot(db_engine)
    big_name = "a" * ONE_MIB
    async with client_at("10.0.0.5") as http:
        user = await http.post(
            "/api/admin/users", json={"name": big_name, "email": "big@example.com"}
        )
        peer = await http.post(
            "/api/admin/federation/peers",
            json={"commonName": "big.example.com", "displayName": big_name},
        )
        redeem = await http.post(
            f"/api/federation/enrollment/{UNKNOWN_TOKEN}", json={"csrPem": big_name}
        )
    for response in (user, peer, redeem):
        assert response.status_code == 413, response.text
        detail = response.json()["detail"]
        assert detail == f"request body is larger than {MAX_BODY} bytes"
    assert await snapshot(db_engine) == before


async def test_streamed_body_over_the_limit_is_cut_off_with_413(
    client_at: ClientFor, db_engine: AsyncEngine
) -> None:
    chunks_sent = 0

    async def endless_json() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'{"name": "'
        for _ in range(ONE_MIB // 1024):
            chunks_sent += 1
            yield b"a" * 1024
        yield b'", "email": "stream@example.com"}'

    before = await snapshot(db_engine)
    async with client_at("10.0.0.6") as http:
        response = await http.post(
            "/api/admin/users",
            content=endless_json(),
            headers={"content-type": "application/json"},
        )
    assert "content-length" not in response.request.headers  # really streamed (chunked)
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body is larger than {MAX_BODY} bytes"}
    assert await snapshot(db_engine) == before


async def test_bodies_under_the_limit_still_work_streamed_or_not(client_at: ClientFor) -> None:
    async def small_json() -> AsyncIterator[bytes]:
        yield b'{"name": "streamed", '
        yield b'"email": "streamed-' + uuid.uuid4().hex.encode() + b'@example.com"}'

    async with client_at("10.0.0.7") as http:
        streamed = await http.post(
            "/api/admin/users", content=small_json(), headers={"content-type": "application/json"}
        )
        plain = await http.post(
            "/api/admin/users",
            json={"name": "n" * (MAX_BODY - 200), "email": f"plain-{uuid.uuid4().hex}@example.com"},
        )
    assert streamed.status_code == 201, streamed.text
    assert plain.status_code == 422  # past the body cap check, refused by the schema (name length)


async def _call(limiter: EnrollmentRateLimit, address: str) -> int:
    """One GET to an enrollment path through the limiter alone; returns the status."""
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": f"/api/federation/enrollment/{UNKNOWN_TOKEN}",
        "headers": [],
        "client": (address, 1),
    }
    await limiter(scope, receive, send)
    return statuses[0]


async def _ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_bucket_refills_at_the_configured_rate() -> None:
    now = [1000.0]
    limiter = EnrollmentRateLimit(_ok_app, rate_per_minute=60, burst=2, clock=lambda: now[0])
    assert [await _call(limiter, "10.1.0.1") for _ in range(3)] == [200, 200, 429]
    now[0] += 1.0  # 60/minute: one more request a second
    assert [await _call(limiter, "10.1.0.1") for _ in range(2)] == [200, 429]


async def test_buckets_are_evicted_so_memory_stays_bounded() -> None:
    limiter = EnrollmentRateLimit(_ok_app, rate_per_minute=1, burst=1, max_clients=100)
    for i in range(1000):
        await _call(limiter, f"10.2.{i // 256}.{i % 256}")
    assert len(limiter.buckets) == 100
    # The most recent clients are the ones kept.
    assert await _call(limiter, "10.2.3.231") == 429


async def test_refusals_by_the_limits_carry_a_request_id(tmp_path: Path) -> None:
    from api.app import create_app
    from federation.db.migrate import upgrade_async
    from tests.conftest import make_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    await upgrade_async(url)
    settings = make_settings(
        url,
        tmp_path,
        mosaic_enroll_rate_per_minute=1,
        mosaic_enroll_burst=1,
    )
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        big = await http.post(
            "/api/admin/users",
            content=b"x" * 70_000,
            headers={"X-Request-ID": "big-1", "content-type": "application/json"},
        )
        assert big.status_code == 413 and big.headers["X-Request-ID"] == "big-1"
        for _ in range(3):
            limited = await http.get(
                f"/api/federation/enrollment/{'a' * 64}", headers={"X-Request-ID": "rl-1"}
            )
        assert limited.status_code == 429 and limited.headers["X-Request-ID"] == "rl-1"
    await app.state.gateway.close()
