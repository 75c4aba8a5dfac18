"""The real step-ca goes away in the middle of a redeem (DESIGN §6, "CA unreachable").

Both lanes: the redeem runs on a worker bound to the session's step-ca
(``lane_with_ca``), the database is the lane's. With ``mosaic_ca_retry_seconds=4``
the issue step is retried (0.5 s, 1 s, … backoff) until the next retry would
cross the 4 s deadline, so in practice the last CA call starts ~2 s into the
run. A CA back within that budget means the enrollment goes through; a CA that
stays down means 503 + Retry-After, the token released and a ``denied`` audit
row, and the same token redeems once the CA is back. step-ca is always
restarted in ``finally``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from federation.runs import redeem_workflow_id
from federation.settings import Settings
from federation.tokens import hash_token
from tests.support.factories import make_grant, make_token
from tests.support.faults import Outcome, assert_redeem_invariants
from tests.support.lanes import lane_with_ca
from tests.support.ledger import ledger_rows
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer
from workflows.redeem import RedeemEnrollment


async def _wait_for_failed_issue_attempt(engine: AsyncEngine, grant_id: str, within: float) -> int:
    """Block until the run's issue step has failed at least once against the dead CA.

    Every attempt reserves a fresh serial in the ledger (``requested``) before it calls
    the CA, and a refused call leaves it so; the issue step is a local activity, so the
    ledger, not Temporal's pending activities, shows the attempts. Returns how many
    attempts there were (≥ 2): proof the outage hit the redeem mid-run.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rows = await ledger_rows(engine, grant_id)
        attempts = [r for r in rows if r["state"] == "requested"]
        if len(attempts) >= 2:
            return len(attempts)
        await asyncio.sleep(0.05)
    raise AssertionError(f"issue never failed against the stopped CA within {within}s")


async def test_step_ca_killed_mid_redeem_and_back_within_the_retry_budget_is_200(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    db_engine: AsyncEngine,
) -> None:
    assert settings.mosaic_ca_retry_seconds == 4
    provider = step_ca.provider()
    try:
        async with lane_with_ca(settings, temporal_env, provider) as client:
            grant = await make_grant(client)
            token = (await make_token(client, grant["id"]))["token"]
            csr_pem, _ = make_csr(grant["_peer"]["commonName"])
            workflow_id = redeem_workflow_id(hash_token(token))

            step_ca.stop()
            try:
                post = asyncio.create_task(
                    client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
                )
                stopped_at = time.monotonic()
                # Back as soon as one CA call has failed: the retries (0.5 s, 1 s, …)
                # stop once the next one would cross the 4 s deadline, i.e. after ~2 s.
                attempt = await _wait_for_failed_issue_attempt(db_engine, grant["id"], within=3)
            finally:
                step_ca.start()
            downtime = time.monotonic() - stopped_at
            assert attempt >= 2 and downtime < settings.mosaic_ca_retry_seconds, (attempt, downtime)

            response = await asyncio.wait_for(post, timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["grantId"] == grant["id"]

            handle = temporal_env.client.get_workflow_handle_for(RedeemEnrollment.run, workflow_id)
            result = await handle.result()
            await assert_redeem_invariants(
                db_engine,
                handle,
                grant_id=grant["id"],
                token_hash=hash_token(token),
                outcome=Outcome(None, result),
            )
            shown = (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()
            assert shown["status"] == "active" and shown["certSerial"] == body["certSerial"]
    finally:
        if not step_ca.running:
            step_ca.start()
        await provider.aclose()


async def test_step_ca_down_past_the_retry_budget_is_503_token_released_then_redeemable(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    db_engine: AsyncEngine,
) -> None:
    provider = step_ca.provider()
    try:
        async with lane_with_ca(settings, temporal_env, provider) as client:
            grant = await make_grant(client)
            token = (await make_token(client, grant["id"]))["token"]
            token_hash = hash_token(token)
            csr_pem, _ = make_csr(grant["_peer"]["commonName"])
            url = f"/api/federation/enrollment/{token}"

            step_ca.stop()
            try:
                down = await client.post(url, json={"csrPem": csr_pem})
            finally:
                step_ca.start()

            assert down.status_code == 503, down.text
            assert int(down.headers["Retry-After"]) > 0
            detail = down.json()["detail"]
            assert detail and "\n" not in detail and "unreachable" in detail
            handle = temporal_env.client.get_workflow_handle_for(
                RedeemEnrollment.run, redeem_workflow_id(token_hash)
            )
            failed = await assert_redeem_invariants(
                db_engine,
                handle,
                grant_id=grant["id"],
                token_hash=token_hash,
                outcome=Outcome("CAUnavailable"),
            )
            assert failed.token["used_at"] is None  # released: still within its TTL
            assert failed.token["csr_fingerprint"] is None
            assert failed.grant["status"] == "pending"
            assert [(d["outcome"], d["status_code"]) for d in failed.denied] == [("denied", 503)]
            assert (await client.get(url)).status_code == 200  # the preflight sees it usable

            again = await client.post(url, json={"csrPem": csr_pem})
            assert again.status_code == 200, again.text
            await assert_redeem_invariants(
                db_engine,
                temporal_env.client.get_workflow_handle_for(
                    RedeemEnrollment.run, redeem_workflow_id(token_hash)
                ),
                grant_id=grant["id"],
                token_hash=token_hash,
                outcome=Outcome(None),
                earlier_denials=1,
            )
    finally:
        if not step_ca.running:
            step_ca.start()
        await provider.aclose()


@pytest.fixture(autouse=True)
def _step_ca_is_up_after_each_test(step_ca: StepCAServer) -> Iterator[None]:
    yield
    assert step_ca.running, "a CA outage test left step-ca stopped"
