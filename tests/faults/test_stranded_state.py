"""Stranded state injected straight into the database is repaired by the reconcile
schedule within one interval, and every repair is audited (actor ``reconciler``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from federation.settings import Settings
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.identity import gateway_client
from workflows.reconcile import ReconcileInput, ensure_reconcile_schedule

INTERVAL = timedelta(seconds=2)
pytestmark = pytest.mark.usefixtures("worker")


# Module scope: a schedule left running (every 2 s, 60 s grace) for the rest of the session
# would repair other tests' rows under them (a claim made here, released minutes later
# while tests/security snapshots the database).
@pytest.fixture(scope="module")
async def schedule(
    settings: Settings, temporal_env: WorkflowEnvironment, db_engine: AsyncEngine
) -> AsyncIterator[str]:
    """The lane's reconcile schedule, every 2 s, with a 1-hour max age for pending grants."""
    schedule_id = await ensure_reconcile_schedule(
        await gateway_client(temporal_env, db_engine),
        task_queue=settings.mosaic_task_queue,
        interval=INTERVAL,
        arg=ReconcileInput(max_pending_age_seconds=3600, grace_seconds=60),
    )
    yield schedule_id
    await temporal_env.client.get_schedule_handle(schedule_id).delete()


def _id(engine: AsyncEngine, value: str) -> str:
    return value if engine.dialect.name == "postgresql" else uuid.UUID(value).hex


def _at(engine: AsyncEngine, moment: datetime) -> datetime:
    return moment if engine.dialect.name == "postgresql" else moment.replace(tzinfo=None)


async def _execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


async def _wait_for(check: Any, *, within: timedelta) -> None:
    deadline = asyncio.get_running_loop().time() + within.total_seconds()
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not repaired in time"
        await asyncio.sleep(0.2)


async def _reconciler_rows(client: httpx.AsyncClient, grant_id: str) -> list[dict[str, Any]]:
    audit = (await client.get("/api/admin/federation/audit", params={"grant": grant_id})).json()
    return [a for a in audit if a["actor"] == "reconciler"]


async def _grant_status(client: httpx.AsyncClient, grant_id: str) -> str:
    return str((await client.get(f"/api/admin/federation/grants/{grant_id}")).json()["status"])


async def test_claimed_token_with_no_run_is_released_within_one_interval(
    schedule: str, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant = await make_grant(client)
    await make_token(client, grant["id"])
    await _execute(
        db_engine,
        "UPDATE federation_enrollment_tokens SET used_at = :now, csr_fingerprint = 'ab'"
        " WHERE grant_id = :g",
        now=_at(db_engine, datetime.now(UTC) - timedelta(minutes=5)),
        g=_id(db_engine, grant["id"]),
    )

    async def released() -> bool:
        rows = await fetch_all(
            db_engine,
            "SELECT used_at FROM federation_enrollment_tokens WHERE grant_id = :g",
            g=_id(db_engine, grant["id"]),
        )
        return rows[0]["used_at"] is None

    await _wait_for(released, within=INTERVAL * 3)
    assert await _grant_status(client, grant["id"]) == "pending"
    rows = await _reconciler_rows(client, grant["id"])
    assert [r["verb"] for r in rows] == ["reconcile.release_claim"]


async def test_claimed_token_past_ttl_with_no_run_expires_the_grant(
    schedule: str, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant = await make_grant(client)
    await make_token(client, grant["id"])
    past = datetime.now(UTC) - timedelta(minutes=5)
    await _execute(
        db_engine,
        "UPDATE federation_enrollment_tokens SET used_at = :t, expires_at = :t,"
        " csr_fingerprint = 'ab' WHERE grant_id = :g",
        t=_at(db_engine, past),
        g=_id(db_engine, grant["id"]),
    )

    async def expired() -> bool:
        return await _grant_status(client, grant["id"]) == "expired"

    await _wait_for(expired, within=INTERVAL * 3)
    assert [r["verb"] for r in await _reconciler_rows(client, grant["id"])] == [
        "reconcile.expire_grant"
    ]


async def test_old_pending_grant_without_live_token_expires_but_one_with_a_token_stays(
    schedule: str, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    stale = await make_grant(client)
    waiting = await make_grant(client)
    await make_token(client, waiting["id"])
    old = _at(db_engine, datetime.now(UTC) - timedelta(hours=2))
    for grant in (stale, waiting):
        await _execute(
            db_engine,
            "UPDATE federation_grants SET created_at = :t WHERE id = :g",
            t=old,
            g=_id(db_engine, grant["id"]),
        )

    async def expired() -> bool:
        return await _grant_status(client, stale["id"]) == "expired"

    await _wait_for(expired, within=INTERVAL * 3)
    assert await _grant_status(client, waiting["id"]) == "pending"
    assert len(await _reconciler_rows(client, stale["id"])) == 1


async def test_active_grant_past_its_certificate_expiry_becomes_expired(
    schedule: str, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant = await make_grant(client)
    await _execute(
        db_engine,
        "UPDATE federation_grants SET status = 'active', cert_serial = 'abc', cert_not_after = :t"
        " WHERE id = :g",
        t=_at(db_engine, datetime.now(UTC) - timedelta(seconds=1)),
        g=_id(db_engine, grant["id"]),
    )

    async def expired() -> bool:
        return await _grant_status(client, grant["id"]) == "expired"

    await _wait_for(expired, within=INTERVAL * 3)
    rows = await _reconciler_rows(client, grant["id"])
    assert rows and rows[0]["certSerial"] == "abc"


async def test_enrolling_peer_with_no_peer_add_run_is_failed(
    schedule: str, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    peer_id = uuid.uuid4()
    await _execute(
        db_engine,
        "INSERT INTO federation_peers (id, common_name, display_name, state,"
        " enrollment_url_sealed, client_key_sealed, created_at, updated_at)"
        " VALUES (:id, NULL, 'orphan', 'pending', 'v1:00000000:AA', 'v1:00000000:AA', :t, :t)",
        id=_id(db_engine, str(peer_id)),
        t=_at(db_engine, datetime.now(UTC) - timedelta(hours=1)),
    )

    async def failed() -> bool:
        peer = (await client.get(f"/api/admin/federation/peers/{peer_id}")).json()
        return bool(peer["state"] == "failed")

    await _wait_for(failed, within=INTERVAL * 3)
    rows = await fetch_all(
        db_engine,
        "SELECT client_key_sealed, enrollment_url_sealed FROM federation_peers WHERE id = :id",
        id=_id(db_engine, str(peer_id)),
    )
    assert rows == [{"client_key_sealed": None, "enrollment_url_sealed": None}]
    audit = (await client.get("/api/admin/federation/audit", params={"peer": str(peer_id)})).json()
    assert [a["actor"] for a in audit] == ["reconciler"]


async def test_reconcile_now_runs_once_and_reports_counts(
    schedule: str, client: httpx.AsyncClient
) -> None:
    response = await client.post("/api/admin/federation/reconcile")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scheduleId"] == schedule and body["workflowId"].startswith(schedule)
    assert {"claimsReleased", "orphanedPeersFailed", "lapsedGrantsExpired"} <= set(body)


async def test_a_fresh_claim_and_a_burnt_token_are_left_alone(
    schedule: str, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    fresh = await make_grant(client)
    burnt = await make_grant(client)
    for grant in (fresh, burnt):
        await make_token(client, grant["id"])
    now = datetime.now(UTC)
    await _execute(
        db_engine,
        "UPDATE federation_enrollment_tokens SET used_at = :t, csr_fingerprint = 'ab'"
        " WHERE grant_id = :g",
        t=_at(db_engine, now),
        g=_id(db_engine, fresh["id"]),
    )
    await _execute(
        db_engine,
        "UPDATE federation_enrollment_tokens SET used_at = :t, burnt_at = :t,"
        " csr_fingerprint = 'ab' WHERE grant_id = :g",
        t=_at(db_engine, now - timedelta(minutes=5)),
        g=_id(db_engine, burnt["id"]),
    )
    await asyncio.sleep((INTERVAL * 2).total_seconds())
    for grant in (fresh, burnt):
        rows = await fetch_all(
            db_engine,
            "SELECT used_at FROM federation_enrollment_tokens WHERE grant_id = :g",
            g=_id(db_engine, grant["id"]),
        )
        assert rows[0]["used_at"] is not None
        assert await _reconciler_rows(client, grant["id"]) == []
