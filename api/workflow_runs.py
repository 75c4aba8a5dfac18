"""Start a workflow run (or attach to the one already there) and wait for it, the way every
route that answers with a run's outcome does it: one place, one set of policies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

R = TypeVar("R")


@dataclass(frozen=True)
class RunStart:
    """What a route says about the run it starts; ids and text only, never a secret."""

    id: str
    task_queue: str
    request_id: str
    summary: str
    details: str
    # A finished run with this id is never re-run unless this allows it.
    reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
    search_attributes: tuple[SearchAttributePair[Any], ...] = ()


@dataclass(frozen=True)
class RunOutcome(Generic[R]):
    result: R | None = None
    # The run failed with a typed error: its ``type`` is the contract, its message safe.
    failure: ApplicationError | None = None
    # Still running after the wait budget: the same request may attach later.
    still_running: bool = False
    # The id was already closed (a finished run answered; nothing was started).
    closed_before: bool = False
    # This call started the run (False: it attached to one another request started).
    started: bool = False


async def start_or_attach(
    temporal: Client,
    run: Callable[[Any, Any], Awaitable[R]],
    arg: Any,
    start: RunStart,
    *,
    wait_seconds: float,
    eager: bool = False,
) -> RunOutcome[R]:
    """Start ``run`` under ``start.id`` (or attach to the run already there) and wait for it.

    ``eager``: a worker in this process, on ``temporal``'s connection, polls the run's
    queue; the server may then answer the start with the first workflow task for it."""
    handle: WorkflowHandle[Any, R]
    closed_before = False
    started = True
    try:
        # FAIL, not USE_EXISTING: the conflict is how we learn the run is not ours.
        handle = await temporal.start_workflow(
            run,
            arg,
            id=start.id,
            task_queue=start.task_queue,
            id_reuse_policy=start.reuse,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={"requestId": start.request_id},
            search_attributes=TypedSearchAttributes(list(start.search_attributes)),
            static_summary=start.summary,
            static_details=start.details,
            request_eager_start=eager,
        )
    except WorkflowAlreadyStartedError as running_or_done:
        # Typed, so a finished run's result decodes to the run's own result class.
        handle = temporal.get_workflow_handle_for(run, start.id, run_id=running_or_done.run_id)
        started = False
        closed_before = (await handle.describe()).status != WorkflowExecutionStatus.RUNNING
    try:
        result = await asyncio.wait_for(handle.result(), timeout=wait_seconds)
    except TimeoutError:
        return RunOutcome(still_running=True, closed_before=closed_before, started=started)
    except WorkflowFailureError as failure:
        cause = failure.cause
        typed = cause if isinstance(cause, ApplicationError) and cause.type else None
        return RunOutcome(failure=typed or _untyped(), closed_before=closed_before, started=started)
    return RunOutcome(result=result, closed_before=closed_before, started=started)


def _untyped() -> ApplicationError:
    # Terminated, timed out or failed without a contract type: a retryable outage to callers.
    return ApplicationError("the run could not complete; try again later", type="Unavailable")
