"""Issue 15, item 5, on both lanes: every enrollment denial is audited (DESIGN §5.4), but
denials that name no known token are counted in one row per client address, verb and
minute, so anonymous traffic cannot grow the audit table per request."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from federation.settings import Settings
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.pki import make_csr

ENROLL = "/api/federation/enrollment"
BURST = 3

pytestmark = pytest.mark.usefixtures("worker")

ClientFor = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


def _addresses(count: int) -> list[str]:
    """Fresh addresses, so rows of other tests (or another run) never mix in."""
    prefix = f"10.{random.randrange(256)}.{random.randrange(256)}"  # noqa: S311 - not crypto
    return [f"{prefix}.{i + 1}" for i in range(count)]


def _clients(app: FastAPI) -> ClientFor:
    @asynccontextmanager
    async def open_client(address: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, client=(address, 4711))
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            yield http

    return open_client


@pytest.fixture
async def client_at(settings: Settings) -> AsyncIterator[ClientFor]:
    """The lane's app (its database and Temporal, limits out of the way), per address."""
    app = create_app(settings)
    yield _clients(app)
    await app.state.gateway.close()


@pytest.fixture
async def limited_client_at(database_url: str, tmp_path: Path) -> AsyncIterator[ClientFor]:
    """The real app on this lane's database with a burst of 3 and 1 request a minute."""
    app = create_app(
        make_settings(
            database_url, tmp_path, mosaic_enroll_rate_per_minute=1, mosaic_enroll_burst=BURST
        )
    )
    yield _clients(app)
    await app.state.gateway.close()


async def _rows_from(engine: AsyncEngine, addresses: list[str]) -> list[dict[str, Any]]:
    marks = ", ".join(f":a{i}" for i in range(len(addresses)))
    return await fetch_all(
        engine,
        "SELECT client_address, actor, verb, outcome, status_code, grant_id, occurrences,"
        f" idempotency_key FROM federation_audit_log WHERE client_address IN ({marks})",  # noqa: S608
        **{f"a{i}": a for i, a in enumerate(addresses)},
    )


def _unknown_token(i: int) -> str:
    # Well-formed unknown tokens and malformed ones alike: neither names anything known.
    return uuid.uuid4().hex * 2 if i % 3 else f"not-a-token-{i}"


async def test_250_anonymous_preflights_from_10_addresses_are_counted_not_written_each(
    client_at: ClientFor, db_engine: AsyncEngine
) -> None:
    addresses = _addresses(10)
    async with asyncio.TaskGroup() as group:
        for index, address in enumerate(addresses):
            group.create_task(_preflights(client_at, address, 25, offset=index * 25))

    rows = await _rows_from(db_engine, addresses)
    counted: dict[str, int] = defaultdict(int)
    rows_per_address: dict[str, int] = defaultdict(int)
    for row in rows:
        assert (row["actor"], row["verb"], row["outcome"], row["status_code"]) == (
            "anonymous",
            "enrollment.preflight",
            "denied",
            404,
        )
        assert row["grant_id"] is None
        assert row["idempotency_key"].startswith(
            f"anon:enrollment.preflight:{row['client_address']}:"
        )
        counted[row["client_address"]] += row["occurrences"]
        rows_per_address[row["client_address"]] += 1
    assert counted == {address: 25 for address in addresses}
    # One row a minute; a run that straddles a minute boundary may need a second.
    assert all(n <= 2 for n in rows_per_address.values()), rows_per_address


async def _preflights(client_at: ClientFor, address: str, count: int, *, offset: int) -> None:
    async with client_at(address) as http:
        for i in range(count):
            response = await http.get(f"{ENROLL}/{_unknown_token(offset + i)}")
            assert response.status_code == 404, response.text


async def test_anonymous_redeems_are_counted_and_the_audit_api_shows_the_count(
    client_at: ClientFor, db_engine: AsyncEngine
) -> None:
    (address,) = _addresses(1)
    csr_pem, _ = make_csr("whoever.example.com")
    async with client_at(address) as http:
        answers = await asyncio.gather(
            *(
                http.post(f"{ENROLL}/{_unknown_token(i)}", json={"csrPem": csr_pem})
                for i in range(12)
            )
        )
        assert {a.status_code for a in answers} == {404}
        audit = (await http.get("/api/admin/federation/audit", params={"outcome": "denied"})).json()

    rows = await _rows_from(db_engine, [address])
    assert sum(r["occurrences"] for r in rows) == 12 and len(rows) <= 2, rows
    assert {r["verb"] for r in rows} == {"enrollment.redeem"}
    shown = [a for a in audit if a.get("clientAddress") == address]
    assert sum(a["occurrences"] for a in shown) == 12, shown
    assert all(a["actor"] == "anonymous" and a["grantId"] is None for a in shown)


async def test_denials_of_a_known_token_stay_one_row_per_request(
    client_at: ClientFor, db_engine: AsyncEngine
) -> None:
    (address,) = _addresses(1)
    async with client_at(address) as http:
        grant = await make_grant(http)
        token = (await make_token(http, grant["id"]))["token"]
        assert (
            await http.patch(f"/api/admin/federation/grants/{grant['id']}/revoke")
        ).status_code == 200
        answers = [await http.get(f"{ENROLL}/{token}") for _ in range(3)]
    assert [a.status_code for a in answers] == [409, 409, 409]

    rows = await _rows_from(db_engine, [address])
    assert len(rows) == 3 and all(r["occurrences"] == 1 for r in rows), rows
    assert all(r["grant_id"] is not None and r["idempotency_key"] is None for r in rows)


async def test_preflight_shares_the_rate_limit_and_limited_requests_write_nothing(
    limited_client_at: ClientFor, db_engine: AsyncEngine
) -> None:
    (address,) = _addresses(1)
    async with limited_client_at(address) as http:
        codes = [(await http.get(f"{ENROLL}/{_unknown_token(i)}")).status_code for i in range(8)]
    assert codes == [404] * BURST + [429] * (8 - BURST)

    rows = await _rows_from(db_engine, [address])
    assert sum(r["occurrences"] for r in rows) == BURST, rows
