"""A real worker process SIGKILLed at each point of the redeem saga, then replaced.

PostgreSQL + real step-ca only: the lane is built here (its own database), so
these tests do not depend on the suite's ``database_url`` lanes. Each case
starts ``RedeemEnrollment`` directly on the crashing worker's task queue with a
2 s workflow-task timeout, waits for the process to die by SIGKILL at its
point, checks what the crash left behind, then lets a fresh in-process worker
(``build_worker``) on the same queue finish the run and checks the invariants:
the run completes (a crash is not a reason to fail an enrollment), one active
certificate per grant with the same serial on grant, peer and token, nothing
stranded, exactly one ``allowed`` audit row.

Points (``tests.faults.crashing_worker.POINTS``), on the redeem's three steps:
before the claim, after the claim, after the issue (signed and verified), after
the activation; plus two windows: the claim committed but its local result not
yet recorded (``claim_unrecorded``), and step-ca signed but the issue completion
never reported (``issue_unreported``). A last case crashes right after a refusal's ``denied``
audit row committed: the replay must not write it twice.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from federation.ca.stepca import StepCA
from federation.db.session import make_engine
from federation.pki.csr import check_csr
from federation.runs import redeem_workflow_id
from federation.settings import Settings
from federation.tokens import hash_token
from tests.conftest import make_settings
from tests.faults.crashing_worker import CRASH_MARK, POINTS
from tests.support.factories import make_grant, make_token
from tests.support.faults import (
    Outcome,
    admin_client,
    assert_redeem_invariants,
    lane_worker,
    outcome_of,
    own_pg_database,
    redeem_state,
    spawn_module,
    unique_queue,
    worker_env,
)
from tests.support.identity import gateway_client
from tests.support.ledger import ledger_rows
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer
from workflows.redeem import RedeemEnrollment, RedeemInput, RedeemResult

# A lost workflow task is retried after this; short so the replacement takes over fast.
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=2)
# Longer than issue's start-to-close (10 s), so an issue attempt lost with the
# worker is retried rather than compensated as "CA unavailable".
CA_RETRY_SECONDS = 30.0


@dataclass
class Lane:
    settings: Settings
    engine: AsyncEngine
    admin: httpx.AsyncClient
    ca: StepCA


@pytest.fixture(scope="module")
async def pg_stepca(
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Lane]:
    """PostgreSQL (a database of its own) + the session's real step-ca."""
    async with own_pg_database() as (_, url):
        settings = make_settings(
            url,
            tmp_path_factory.mktemp("faults-crash"),
            temporal_address=temporal_env.client.service_client.config.target_host,
            mosaic_task_queue=unique_queue("faults-crash"),
            mosaic_ca_retry_seconds=CA_RETRY_SECONDS,
        )
        engine = make_engine(url)
        provider = step_ca.provider()
        try:
            async with admin_client(settings) as admin:
                yield Lane(settings, engine, admin, provider)
        finally:
            await provider.aclose()
            await engine.dispose()


# point -> (token claimed, grant active) right after the crash, before any replacement
LEFT_BEHIND: dict[str, tuple[bool, bool]] = {
    "before_claim": (False, False),
    "claim_unrecorded": (True, False),
    "after_claim": (True, False),
    "issue_unreported": (True, False),
    "after_issue": (True, False),
    "after_activate": (True, True),
}
assert set(LEFT_BEHIND) == set(POINTS)


@dataclass
class Crashed:
    """A redeem run whose first worker died at ``point``; ``finish()`` replaces it."""

    lane: Lane
    temporal_env: WorkflowEnvironment
    handle: WorkflowHandle[RedeemEnrollment, RedeemResult]
    queue: str
    worker_log: str

    async def finish(self) -> Outcome:
        """A fresh in-process worker on the same queue; the run's outcome."""
        replacement = await lane_worker(
            self.temporal_env.client,
            self.lane.settings,
            self.lane.engine,
            self.lane.ca,
            task_queue=self.queue,
        )
        async with replacement:
            # 10 s issue timeout + up to 10 s sticky-queue timeout in the worst case
            return await outcome_of(self.handle, within=45)


async def crash_redeem(
    lane: Lane,
    step_ca: StepCAServer,
    temporal_env: WorkflowEnvironment,
    log_dir: Path,
    *,
    point: str,
    token_hash: str,
    csr_pem: str,
) -> Crashed:
    """Start a redeem on a worker process that SIGKILLs itself at ``point``; wait for it."""
    queue = unique_queue(f"crash-{point.replace(':', '-')}")
    crashing = spawn_module(
        "tests.faults.crashing_worker",
        ["--point", point],
        worker_env(lane.settings, step_ca, task_queue=queue),
        log_dir / "crashing-worker.log",
    )
    try:
        client = await gateway_client(temporal_env, lane.engine)
        handle = await client.start_workflow(
            RedeemEnrollment.run,
            RedeemInput(
                f"fault-{uuid.uuid4().hex[:12]}",
                token_hash,
                csr_pem,
                CA_RETRY_SECONDS,
                csr_fingerprint=check_csr(csr_pem).fingerprint,  # as the API starts it
            ),
            id=redeem_workflow_id(token_hash),
            task_queue=queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
        )
        code = await crashing.wait(within=20)
        log = crashing.log()
        assert code == -signal.SIGKILL, f"worker exited with {code}, not SIGKILL:\n{log[-3000:]}"
        assert f"{CRASH_MARK} {point}" in log, log[-3000:]
    finally:
        crashing.kill()
    return Crashed(lane, temporal_env, handle, queue, log)


@pytest.mark.parametrize("point", list(POINTS))
async def test_worker_killed_at_a_saga_point_is_replaced_and_the_redeem_completes_once(
    point: str,
    pg_stepca: Lane,
    step_ca: StepCAServer,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    lane = pg_stepca
    grant = await make_grant(lane.admin)
    token_hash = hash_token((await make_token(lane.admin, grant["id"]))["token"])
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])

    crashed = await crash_redeem(
        lane, step_ca, temporal_env, tmp_path, point=point, token_hash=token_hash, csr_pem=csr_pem
    )
    # The crash hit where it was meant to: the database shows the saga's progress so far.
    claimed, active = LEFT_BEHIND[point]
    left = await redeem_state(lane.engine, grant["id"], token_hash)
    assert (left.token["used_at"] is not None) == claimed, left
    assert (left.grant["status"] == "active") == active, left

    outcome = await crashed.finish()
    await assert_redeem_invariants(
        lane.engine, crashed.handle, grant_id=grant["id"], token_hash=token_hash, outcome=outcome
    )
    # Only a worker died: nothing failed for good, so the enrollment must go through.
    assert outcome.kind is None, f"run failed with {outcome.kind} after a crash at {point}"
    assert outcome.result is not None and outcome.result.grant_id == grant["id"]
    shown = (await lane.admin.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
    assert shown["state"] == "active" and shown["certSerial"] == outcome.result.serial
    # The steps re-run after the crash, the CA step too: the ledger answers it with the
    # certificate the run already had, so the CA signed exactly once.
    rows = await ledger_rows(lane.engine, grant["id"])
    assert [(r["serial"], r["state"]) for r in rows] == [(outcome.result.serial, "active")], rows


async def test_worker_killed_after_recording_a_denial_leaves_exactly_one_denied_row(
    pg_stepca: Lane,
    step_ca: StepCAServer,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    """A refused redeem (CSR for another CN → 400) whose worker dies right after the
    ``denied`` audit row committed: the replacement replays the refusal, and the
    audit log must still say it once (every activity is idempotent)."""
    lane = pg_stepca
    grant = await make_grant(lane.admin)
    token_hash = hash_token((await make_token(lane.admin, grant["id"]))["token"])
    csr_pem, _ = make_csr("someone-else.example.com")

    crashed = await crash_redeem(
        lane,
        step_ca,
        temporal_env,
        tmp_path,
        point="after:redeem.record_denial",
        token_hash=token_hash,
        csr_pem=csr_pem,
    )
    left = await redeem_state(lane.engine, grant["id"], token_hash)
    assert [row["status_code"] for row in left.denied] == [400], left.audit

    outcome = await crashed.finish()
    assert outcome.kind == "InvalidCSR"
    await assert_redeem_invariants(
        lane.engine, crashed.handle, grant_id=grant["id"], token_hash=token_hash, outcome=outcome
    )
