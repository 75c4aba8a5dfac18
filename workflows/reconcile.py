"""ReconcileEnrollments, run by a Temporal Schedule: repairs what slipped through the saga
(a run terminated by ops, a crash outside Temporal). Returns counts per kind of repair."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.peer_certificate import PeerCertificate, PeerCertificateInput, lifecycle_start

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import PeerWithoutLifecycle, ReconcileActivities, SweepInput
    from federation.runs import reconcile_schedule_id

SWEEP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


@dataclass(frozen=True)
class ReconcileInput:
    max_pending_age_seconds: float = 7 * 24 * 3600
    grace_seconds: float = 120


@dataclass(frozen=True)
class ReconcileReport:
    claims_released: int
    stranded_grants_expired: int
    stale_pending_grants_expired: int
    orphaned_peers_failed: int
    lapsed_grants_expired: int
    certificates_withdrawn: int = 0
    certificates_revoked: int = 0
    certificate_revocations_left: int = 0
    lifecycles_started: int = 0


@workflow.defn(name="ReconcileEnrollments")
class ReconcileEnrollments:
    @workflow.run
    async def run(self, arg: ReconcileInput) -> ReconcileReport:
        sweep = SweepInput(
            request_id=workflow.info().workflow_id,
            max_pending_age_seconds=arg.max_pending_age_seconds,
            grace_seconds=arg.grace_seconds,
        )
        # The sweeps touch disjoint rows: run them side by side. Grants a sweep expires
        # here get their certificates decided by the next run's certificate sweep.
        timeout = timedelta(seconds=60)
        claims, stale, peers, lapsed, certs = await asyncio.gather(
            workflow.execute_activity_method(
                ReconcileActivities.claimed_tokens,
                sweep,
                start_to_close_timeout=timeout,
                retry_policy=SWEEP,
            ),
            workflow.execute_activity_method(
                ReconcileActivities.stale_pending_grants,
                sweep,
                start_to_close_timeout=timeout,
                retry_policy=SWEEP,
            ),
            workflow.execute_activity_method(
                ReconcileActivities.orphaned_peers,
                sweep,
                start_to_close_timeout=timeout,
                retry_policy=SWEEP,
            ),
            workflow.execute_activity_method(
                ReconcileActivities.lapsed_grants,
                sweep,
                start_to_close_timeout=timeout,
                retry_policy=SWEEP,
            ),
            workflow.execute_activity_method(
                ReconcileActivities.certificates,
                sweep,
                start_to_close_timeout=timeout,
                retry_policy=SWEEP,
            ),
        )
        missing: list[PeerWithoutLifecycle] = await workflow.execute_activity_method(
            ReconcileActivities.peer_lifecycles,
            sweep,
            start_to_close_timeout=timeout,
            retry_policy=SWEEP,
        )
        started = 0
        for peer in missing:
            started += await _start_lifecycle(peer, sweep.request_id)
        return ReconcileReport(
            claims.released,
            claims.grants_expired,
            stale,
            peers,
            lapsed,
            certs.orphans_withdrawn + certs.closed_grant_rows_decided,
            certs.revoked_at_ca,
            certs.left_at_ca,
            started,
        )


async def _start_lifecycle(peer: PeerWithoutLifecycle, request_id: str) -> int:
    """An active peer's certificate with no lifecycle run gets one (it outlives this run)."""
    try:
        await workflow.start_child_workflow(
            PeerCertificate.run,
            PeerCertificateInput(peer.peer_id, request_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            **lifecycle_start(peer.peer_id, peer.grant_id),
        )
    except WorkflowAlreadyStartedError:
        return 0  # started meanwhile (visibility lags a little)
    return 1


async def ensure_reconcile_schedule(
    client: Client,
    *,
    task_queue: str,
    interval: timedelta,
    arg: ReconcileInput,
) -> str:
    """Create the schedule, or bring an existing one to this interval: safe on every start."""
    schedule_id = reconcile_schedule_id(task_queue)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileEnrollments.run,
            arg,
            id=f"{schedule_id}-run",
            task_queue=task_queue,
            static_summary="Reconcile: repair stranded enrollments",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(update)
    return schedule_id
