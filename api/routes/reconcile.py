from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleHandle,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AdminDep, GatewayDep, TemporalDep
from api.schemas import ReconcileOut, problem_responses
from federation.runs import reconcile_schedule_id
from workflows.reconcile import ReconcileEnrollments, ReconcileReport
from workflows.task_queue import WORKFLOW_TASKS, recent_pollers

router = APIRouter(prefix="/api/admin/federation/reconcile", tags=["reconcile"])

RUN_WAIT_SECONDS = 60
_RETRY = {"Retry-After": "5"}


@router.post("", response_model=ReconcileOut, responses=problem_responses(401, 403, 503))
async def reconcile_now(gateway: GatewayDep, temporal: TemporalDep, _: AdminDep) -> ReconcileOut:
    """Trigger the reconcile schedule once and wait (up to a minute) for that run's counts.

    503 when no worker serves the task queue: the run would never start.
    """
    task_queue = await gateway.task_queue()
    if not await worker_polls(temporal, gateway.settings.temporal_namespace, task_queue):
        raise HTTPException(503, _no_worker(task_queue), _RETRY)
    schedule_id = reconcile_schedule_id(task_queue)
    handle = temporal.get_schedule_handle(schedule_id)
    try:
        seen = set(await _started_runs(handle))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # The worker creates the schedule when it starts: none yet means no worker yet.
        raise HTTPException(503, _no_worker(task_queue), _RETRY) from None
    await handle.trigger()
    for _attempt in range(100):
        fresh = [run for run in await _started_runs(handle) if run not in seen]
        if fresh:
            workflow_id, run_id = fresh[-1]
            run: WorkflowHandle[ReconcileEnrollments, ReconcileReport] = (
                temporal.get_workflow_handle_for(
                    ReconcileEnrollments.run, workflow_id, run_id=run_id
                )
            )
            try:
                report: ReconcileReport = await asyncio.wait_for(run.result(), RUN_WAIT_SECONDS)
            except TimeoutError:
                raise HTTPException(
                    503,
                    f"reconcile run {workflow_id} did not finish within {RUN_WAIT_SECONDS}s;"
                    f" is a worker serving task queue {task_queue}?",
                    _RETRY,
                ) from None
            return ReconcileOut(schedule_id=schedule_id, workflow_id=workflow_id, **vars(report))
        await asyncio.sleep(0.1)
    # The schedule skips a trigger while its previous run is still running.
    raise HTTPException(
        503, f"no reconcile run started: the previous run of {schedule_id} is still running", _RETRY
    )


async def worker_polls(client: Client, namespace: str, task_queue: str) -> bool:
    """Whether a worker polled the workflow task queue recently (DescribeTaskQueue)."""
    return bool(await recent_pollers(client, namespace, task_queue, kinds=(WORKFLOW_TASKS,)))


def _no_worker(task_queue: str) -> str:
    return f"no worker is serving task queue {task_queue}; start `mosaic gateway worker`"


async def _started_runs(handle: ScheduleHandle) -> list[tuple[str, str]]:
    described = await handle.describe()
    return [
        (a.action.workflow_id, a.action.first_execution_run_id)
        for a in described.info.recent_actions
        if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
    ]
