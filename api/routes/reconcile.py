from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from temporalio.client import ScheduleActionExecutionStartWorkflow, ScheduleHandle
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AdminDep, GatewayDep, TemporalDep
from api.schemas import ReconcileOut, problem_responses
from federation.runs import reconcile_schedule_id
from workflows.reconcile import ReconcileEnrollments, ReconcileReport

router = APIRouter(prefix="/api/admin/federation/reconcile", tags=["reconcile"])


@router.post("", response_model=ReconcileOut, responses=problem_responses(401, 403, 503))
async def reconcile_now(gateway: GatewayDep, temporal: TemporalDep, _: AdminDep) -> ReconcileOut:
    """Trigger the reconcile schedule once and wait (up to a minute) for that run's counts."""
    schedule_id = reconcile_schedule_id(gateway.settings.mosaic_task_queue)
    handle = temporal.get_schedule_handle(schedule_id)
    try:
        seen = set(await _started_runs(handle))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # The worker creates the schedule when it starts: none yet means no worker yet.
        raise HTTPException(
            503, "reconcile schedule not found; is the worker running?", {"Retry-After": "5"}
        ) from None
    await handle.trigger()
    for _attempt in range(100):
        fresh = [run for run in await _started_runs(handle) if run not in seen]
        if fresh:
            workflow_id, run_id = fresh[-1]
            run = temporal.get_workflow_handle_for(
                ReconcileEnrollments.run, workflow_id, run_id=run_id
            )
            report: ReconcileReport = await asyncio.wait_for(run.result(), 60)
            return ReconcileOut(schedule_id=schedule_id, workflow_id=workflow_id, **vars(report))
        await asyncio.sleep(0.1)
    return ReconcileOut(schedule_id=schedule_id, workflow_id=None)


async def _started_runs(handle: ScheduleHandle) -> list[tuple[str, str]]:
    described = await handle.describe()
    return [
        (a.action.workflow_id, a.action.first_execution_run_id)
        for a in described.info.recent_actions
        if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
    ]
