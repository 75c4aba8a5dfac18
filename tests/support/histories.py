"""Replaying a run's history on the current workflows, and what the SDK cannot replay."""

from __future__ import annotations

import uuid

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.deadlines import LocalDeadlines
from workflows.identity import GatewayGuard
from workflows.worker import WORKFLOWS


def replayer() -> Replayer:
    """A replayer with the worker's own workflow interceptors: the header carrying and the
    local-activity retries are part of what replays."""
    return Replayer(
        workflows=list(WORKFLOWS),
        interceptors=[GatewayGuard(uuid.UUID(int=0)), LocalDeadlines()],
        workflow_failure_exception_types=[Exception],
    )


def local_activity_timed_out(history: WorkflowHistory) -> bool:
    """Whether the SDK timed out a local activity of the run (its start-to-close)."""
    return bool(sdk_timeouts(history))


def sdk_timeouts(history: WorkflowHistory) -> list[str]:
    """What the SDK timed out in the run, one line each: the local activity's marker, as
    ``event <id>: <failure message>``, and the run's task queue first."""
    found = []
    for event in history.events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_local_activity" and marker.failure.HasField(
            "timeout_failure_info"
        ):
            found.append(f"event {event.event_id}: {marker.failure.message}")
    if found and history.events:
        started = history.events[0].workflow_execution_started_event_attributes
        found.insert(0, f"queue {started.task_queue.name}")
    return found
