"""A local activity that hangs is ended by the worker itself, a moment before the SDK's
own deadline, as an ordinary retryable failure (``workflows.deadlines``): the SDK's
local-activity timeout could stall the run and leave a history that does not replay.

Both lanes, on the lane's database and CA; the stall is a hook inside the worker's
interceptors, where a real stall (a hung database call, a CA that never answers) sits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from federation.ca.base import CertificateAuthority
from federation.runs import redeem_workflow_id
from federation.settings import Settings
from federation.tokens import hash_token
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.faults import db_id
from tests.support.histories import local_activity_timed_out, replayer
from tests.support.lanes import lane_with_ca
from tests.support.ledger import settled_ledger
from tests.support.pki import make_csr
from workflows.deadlines import MARGIN

pytestmark = pytest.mark.usefixtures("worker")

Proceed = Callable[[], Awaitable[Any]]
CLAIM_DEADLINE = 10.0  # RedeemEnrollment's start-to-close for redeem.validate_and_claim


async def _redeem(client: httpx.AsyncClient) -> tuple[dict[str, Any], str, httpx.Response]:
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    return grant, token, response


async def test_a_hung_claim_attempt_is_ended_before_the_sdk_deadline_and_its_retry_enrolls(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    db_engine: AsyncEngine,
) -> None:
    ended_after: list[float] = []

    async def first_claim_hangs(activity_type: str, proceed: Proceed) -> Any:
        if activity_type == "redeem.validate_and_claim" and not ended_after:
            started = time.monotonic()
            try:
                await asyncio.sleep(60)
            finally:
                ended_after.append(time.monotonic() - started)
        return await proceed()

    async with lane_with_ca(settings, temporal_env, ca, hook=first_claim_hangs) as client:
        grant, token, response = await _redeem(client)
        assert response.status_code == 200, response.text
        # Ended by our deadline, not by the SDK's (which would cancel it at 10 s).
        assert ended_after, "the hung attempt was never ended"
        expected = CLAIM_DEADLINE - MARGIN.total_seconds()
        assert expected - 0.5 <= ended_after[0] < CLAIM_DEADLINE - 0.2, ended_after
        rows = await settled_ledger(db_engine, grant["id"])
        assert [(r["state"], r["serial"]) for r in rows] == [
            ("active", response.json()["certSerial"])
        ]
        history = await temporal_env.client.get_workflow_handle(
            redeem_workflow_id(hash_token(token))
        ).fetch_history()
        # The retry was scheduled afresh, by a timer, with the whole 10 s of its own.
        assert any(e.HasField("timer_started_event_attributes") for e in history.events)
        await _assert_replays(history)


async def test_a_ca_step_that_hangs_past_its_budget_is_a_ca_outage_and_the_token_is_released(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    db_engine: AsyncEngine,
) -> None:
    async def sign_hangs(activity_type: str, proceed: Proceed) -> Any:
        if activity_type == "certificates.certify":
            await asyncio.sleep(60)
        return await proceed()

    budget = settings.mosaic_ca_retry_seconds
    async with lane_with_ca(settings, temporal_env, ca, hook=sign_hangs) as client:
        began = time.monotonic()
        grant, token, response = await _redeem(client)
        took = time.monotonic() - began
        assert response.status_code == 503, response.text
        assert "unreachable" in response.json()["detail"]
        assert int(response.headers["Retry-After"]) > 0
        assert took < budget + 5, took  # the budget ends the step, not a 10 s attempt
        denials = (
            await client.get(
                "/api/admin/federation/audit", params={"grant": grant["id"], "outcome": "denied"}
            )
        ).json()
        assert len(denials) == 1 and denials[0]["reason"].startswith("CAUnavailable"), denials
        assert await settled_ledger(db_engine, grant["id"]) == []  # the CA was never called
        (claim,) = await fetch_all(
            db_engine,
            "SELECT used_at, burnt_at FROM federation_enrollment_tokens WHERE grant_id = :g",
            g=db_id(db_engine, grant["id"]),
        )
        assert claim == {"used_at": None, "burnt_at": None}  # released: the peer may retry
        history = await temporal_env.client.get_workflow_handle(
            redeem_workflow_id(hash_token(token))
        ).fetch_history()
        await _assert_replays(history)


async def _assert_replays(history: WorkflowHistory) -> None:
    """No local activity of the run was timed out by the SDK, and the run replays."""
    assert not local_activity_timed_out(history)
    result = await asyncio.wait_for(replayer().replay_workflow(history), timeout=30)
    assert result.replay_failure is None, result.replay_failure
