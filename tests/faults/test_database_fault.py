"""PostgreSQL drops every connection while the grant is being activated (DESIGN §6:
"database down during activation → retried until it succeeds").

Each case has a database of its own, so the outage hits nobody else. The worker
is the real one (``build_worker``) in this process, with an activity hook on
``redeem.activate``: on the first attempt only, the database stops accepting
connections, every backend of it is terminated, and connections are allowed
again ~2 s later. The activation fails on the dead connection and Temporal
retries it until it lands:

- ``before_transaction``: the cut happens as the activity starts, so its
  session finds its pooled connection dead and a new one refused;
- ``mid_transaction``: the cut happens inside the activation's transaction,
  after the grant, peer and token updates and right before the audit insert,
  so nothing of that attempt may survive (CRIT-2: one transaction).

Either way the redeem answers 200, the grant is active once, with exactly one
``allowed`` audit row, the token and the peer carry the grant's serial.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only
from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from federation.db.session import make_engine
from federation.runs import redeem_workflow_id
from federation.tokens import hash_token
from tests.conftest import make_settings
from tests.support.factories import make_grant, make_token
from tests.support.faults import (
    Outcome,
    admin_client,
    assert_redeem_invariants,
    cut_off_database,
    lane_worker,
    own_pg_database,
    set_allow_connections,
    unique_queue,
)
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer
from workflows.redeem import RedeemEnrollment

OUTAGE_SECONDS = 2.0


@pytest.fixture
async def own_database() -> AsyncIterator[tuple[str, str]]:
    async with own_pg_database() as database:
        yield database


async def _reallow_after(database: str, delay: float) -> None:
    await asyncio.sleep(delay)
    await set_allow_connections(database, True)


class ActivationOutage:
    """Cuts the database off once, during the first attempt of ``redeem.activate``."""

    def __init__(self, database: str, worker_engine: AsyncEngine, where: str) -> None:
        self.database = database
        self.where = where
        self.attempts: list[tuple[int, str]] = []
        self.terminated = 0
        self.reallow: asyncio.Task[None] | None = None
        self._armed = False
        if where == "mid_transaction":
            event.listen(worker_engine.sync_engine, "before_cursor_execute", self._before_execute)

    async def _cut(self) -> None:
        self.terminated = await cut_off_database(self.database)
        self.reallow = asyncio.create_task(_reallow_after(self.database, OUTAGE_SECONDS))

    def _before_execute(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Sync hook inside SQLAlchemy's greenlet: await_only runs the cut on the loop.
        if self._armed and statement.lstrip().upper().startswith("INSERT INTO FEDERATION_AUDIT"):
            self._armed = False
            await_only(self._cut())

    async def hook(self, activity_type: str, proceed: Callable[[], Awaitable[Any]]) -> Any:
        if activity_type != "redeem.activate":
            return await proceed()
        attempt = activity.info().attempt
        first = not self.attempts and self.reallow is None
        if first and self.where == "before_transaction":
            await self._cut()
        elif first:
            self._armed = True
        try:
            result = await proceed()
        except BaseException as exc:
            self.attempts.append((attempt, type(exc).__name__))
            raise
        finally:
            self._armed = False
        self.attempts.append((attempt, "ok"))
        return result


@pytest.mark.parametrize("where", ["before_transaction", "mid_transaction"])
async def test_connections_dropped_during_activation_are_retried_and_activate_once(
    where: str,
    own_database: tuple[str, str],
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    tmp_path: Path,
) -> None:
    database, url = own_database
    settings = make_settings(
        url,
        tmp_path,
        temporal_address=temporal_env.client.service_client.config.target_host,
        mosaic_task_queue=unique_queue(f"faults-db-{where}"),
        mosaic_ca_retry_seconds=4,
        mosaic_enroll_wait_seconds=60,
    )
    worker_engine = make_engine(url)
    check_engine = make_engine(url)
    provider = step_ca.provider()
    outage = ActivationOutage(database, worker_engine, where)
    try:
        async with (
            await lane_worker(
                temporal_env.client, settings, worker_engine, provider, hook=outage.hook
            ),
            admin_client(settings) as admin,
        ):
            grant = await make_grant(admin)
            token = (await make_token(admin, grant["id"]))["token"]
            csr_pem, _ = make_csr(grant["_peer"]["commonName"])
            response = await admin.post(
                f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem}
            )
            assert response.status_code == 200, response.text
            body = response.json()

        # The outage really hit the activation: live connections were dropped, the
        # first attempt failed on them, a later one succeeded.
        assert outage.reallow is not None, "the activation never ran"
        await outage.reallow
        assert outage.terminated >= 1
        assert len(outage.attempts) >= 2, outage.attempts
        assert outage.attempts[0][0] == 1 and outage.attempts[0][1] != "ok", outage.attempts
        assert all(result != "ok" for _, result in outage.attempts[:-1]), outage.attempts
        assert outage.attempts[-1][1] == "ok", outage.attempts

        token_hash = hash_token(token)
        handle = temporal_env.client.get_workflow_handle_for(
            RedeemEnrollment.run, redeem_workflow_id(token_hash)
        )
        state = await assert_redeem_invariants(
            check_engine,
            handle,
            grant_id=grant["id"],
            token_hash=token_hash,
            outcome=Outcome(None, await handle.result()),
        )
        assert state.grant["status"] == "active"
        assert state.grant["cert_serial"] == body["certSerial"]
        assert state.token["cert_serial"] == body["certSerial"]
        assert state.peer["cert_serial"] == body["certSerial"]
        assert [row["status_code"] for row in state.audit] == [200]  # one activation
    finally:
        if outage.reallow is not None:
            outage.reallow.cancel()
        await set_allow_connections(database, True)
        await provider.aclose()
        await worker_engine.dispose()
        await check_engine.dispose()
