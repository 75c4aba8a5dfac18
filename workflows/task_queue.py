"""Who polls a task queue (Temporal's DescribeTaskQueue), and the rule a worker checks at
start: it never joins a queue another gateway's worker serves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from federation.identity import task_queue_for
from federation.settings import ConfigurationError
from workflows.identity import gateway_of_worker

# A live worker polls again as soon as its long poll (about a minute) ends; Temporal lists
# a stopped worker's last poll for minutes, so only a recent poll counts as serving.
LIVE_POLL = timedelta(seconds=90)
WORKFLOW_TASKS = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
ACTIVITY_TASKS = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY


@dataclass(frozen=True)
class Poller:
    identity: str
    last_poll: datetime


async def recent_pollers(
    client: Client,
    namespace: str,
    task_queue: str,
    kinds: Sequence[TaskQueueType.ValueType] = (WORKFLOW_TASKS, ACTIVITY_TASKS),
) -> list[Poller]:
    """Workers that polled ``task_queue`` (for these task kinds) within ``LIVE_POLL``."""
    described = await asyncio.gather(
        *(
            client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(
                        name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL
                    ),
                    task_queue_type=kind,
                )
            )
            for kind in kinds
        )
    )
    recent = datetime.now(UTC) - LIVE_POLL
    pollers = (
        Poller(p.identity, p.last_access_time.ToDatetime(tzinfo=UTC))
        for answer in described
        for p in answer.pollers
    )
    return [p for p in pollers if p.last_poll >= recent]


async def refuse_foreign_pollers(
    client: Client, *, namespace: str, task_queue: str, gateway_id: uuid.UUID
) -> None:
    """``ConfigurationError`` (one line) when a recent poller of ``task_queue`` is a worker
    of another gateway, or not a Mosaic gateway worker at all: its runs would cross wires.

    An unrecognised poller is refused too: a Mosaic worker from before gateway identities
    (it validates against whichever database it has) looks just like that.
    """
    for poller in await recent_pollers(client, namespace, task_queue):
        owner = gateway_of_worker(poller.identity)
        if owner == gateway_id:
            continue
        whose = "another gateway's worker" if owner else "a worker that names no gateway"
        raise ConfigurationError(
            f"task queue {task_queue} is served by {whose} ({poller.identity[:120]});"
            " a worker never serves another gateway's queue: unset MOSAIC_TASK_QUEUE (this"
            f" gateway's own queue is {task_queue_for(gateway_id)}) or set one no other"
            " gateway uses"
        )
