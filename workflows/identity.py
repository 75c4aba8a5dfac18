"""Every run carries the gateway that started it; a worker acts only for its own gateway.

The context-propagation pattern of Temporal's samples-python, with one header:

- ``GatewayHeaders`` (client): a ``mosaic-gateway`` header and a ``gatewayId`` memo on
  every workflow start and on the start-workflow action of every schedule it creates or
  updates (the schedule's runs start with that header and memo);
- ``GatewayGuard`` (worker): carries a workflow's header to its activities, local
  activities, child workflows and continue-as-new, and refuses any activity whose header
  names another gateway or is missing (non-retryable ``WrongGateway``).

The workflow part only copies the header the run started with: it is deterministic, and
a worker of another gateway cannot re-label a run it should not have picked up.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, Protocol

from temporalio import activity, workflow
from temporalio import client as temporal_client
from temporalio import worker as temporal_worker
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, Schedule, ScheduleActionStartWorkflow
from temporalio.converter import PayloadConverter
from temporalio.exceptions import ApplicationError

HEADER = "mosaic-gateway"
MEMO_KEY = "gatewayId"
WRONG_GATEWAY = "WrongGateway"
# A worker's Temporal identity: mosaic-gw-<gateway id>@<host>:<pid>.
_WORKER_IDENTITY = re.compile(r"mosaic-gw-([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})@")

log = logging.getLogger("mosaic.worker")

GatewayIdSource = Callable[[], Awaitable[uuid.UUID]]


def worker_identity(gateway_id: uuid.UUID) -> str:
    """The identity a worker polls with: it names the gateway it serves."""
    return f"mosaic-gw-{gateway_id}@{socket.gethostname()}:{os.getpid()}"


def gateway_of_worker(identity: str) -> uuid.UUID | None:
    """The gateway a poller's identity names; None when it is not a Mosaic worker's."""
    found = _WORKER_IDENTITY.match(identity)
    return uuid.UUID(found.group(1)) if found else None


def _payload(gateway_id: uuid.UUID) -> Payload:
    return PayloadConverter.default.to_payload(str(gateway_id))


def _claimed(headers: Mapping[str, Payload]) -> str | None:
    """The gateway a run's header names, as sent; None when there is none."""
    payload = headers.get(HEADER)
    if payload is None:
        return None
    try:
        return str(PayloadConverter.default.from_payload(payload, str))
    except Exception:  # noqa: BLE001 - any undecodable header names no gateway of ours
        return "(unreadable)"


# --------------------------------------------------------------------------- client side


class GatewayHeaders(temporal_client.Interceptor):
    """Stamps this gateway on every workflow start and schedule action of a client.

    ``gateway_id`` may be a coroutine function: the API connects to Temporal without
    its database (readiness, listings) and reads the id on the first start.
    """

    def __init__(self, gateway_id: uuid.UUID | GatewayIdSource) -> None:
        self._gateway_id = gateway_id

    async def gateway_id(self) -> uuid.UUID:
        if isinstance(self._gateway_id, uuid.UUID):
            return self._gateway_id
        return await self._gateway_id()

    def intercept_client(
        self, next: temporal_client.OutboundInterceptor
    ) -> temporal_client.OutboundInterceptor:
        return _Stamping(next, self)


class _WithHeaders(Protocol):
    headers: Mapping[str, Payload]


class _StartWithMemo(_WithHeaders, Protocol):
    memo: Mapping[str, Any] | None


class _Stamping(temporal_client.OutboundInterceptor):
    def __init__(self, next: temporal_client.OutboundInterceptor, owner: GatewayHeaders) -> None:
        super().__init__(next)
        self._owner = owner

    async def start_workflow(
        self, input: temporal_client.StartWorkflowInput
    ) -> temporal_client.WorkflowHandle[Any, Any]:
        await self._stamp_start(input)
        return await self.next.start_workflow(input)

    async def start_update_with_start_workflow(
        self, input: temporal_client.StartWorkflowUpdateWithStartInput
    ) -> temporal_client.WorkflowUpdateHandle[Any]:
        await self._stamp_start(input.start_workflow_input)
        return await self.next.start_update_with_start_workflow(input)

    async def _stamp_start(self, start: _StartWithMemo) -> None:
        gateway_id = await self._owner.gateway_id()
        start.headers = {**start.headers, HEADER: _payload(gateway_id)}
        start.memo = {**(start.memo or {}), MEMO_KEY: str(gateway_id)}

    async def create_schedule(
        self, input: temporal_client.CreateScheduleInput
    ) -> temporal_client.ScheduleHandle:
        _stamp(input.schedule, await self._owner.gateway_id())
        return await self.next.create_schedule(input)

    async def update_schedule(self, input: temporal_client.UpdateScheduleInput) -> None:
        gateway_id = await self._owner.gateway_id()
        updater = input.updater

        async def stamped(
            current: temporal_client.ScheduleUpdateInput,
        ) -> temporal_client.ScheduleUpdate | None:
            update = updater(current)
            if inspect.isawaitable(update):
                update = await update
            if update is not None:
                _stamp(update.schedule, gateway_id)
            return update

        input.updater = stamped
        await self.next.update_schedule(input)


def _stamp(schedule: Schedule, gateway_id: uuid.UUID) -> None:
    action = schedule.action
    if isinstance(action, ScheduleActionStartWorkflow):
        action.headers = {**(action.headers or {}), HEADER: _payload(gateway_id)}
        action.memo = {**(action.memo or {}), MEMO_KEY: str(gateway_id)}


def speaking_for(client: Client, gateway_id: uuid.UUID | GatewayIdSource) -> Client:
    """``client``'s connection, with every start and schedule stamped for ``gateway_id``."""
    config = client.config()
    others = [i for i in config["interceptors"] if not isinstance(i, GatewayHeaders)]
    config["interceptors"] = [*others, GatewayHeaders(gateway_id)]
    return Client(**config)


# --------------------------------------------------------------------------- worker side


class GatewayGuard(temporal_worker.Interceptor):
    """A worker's half: runs carry their header onwards; activities act for this gateway only."""

    def __init__(self, gateway_id: uuid.UUID) -> None:
        self._gateway_id = gateway_id

    def intercept_activity(
        self, next: temporal_worker.ActivityInboundInterceptor
    ) -> temporal_worker.ActivityInboundInterceptor:
        return _Refusing(next, self._gateway_id)

    def workflow_interceptor_class(
        self, input: temporal_worker.WorkflowInterceptorClassInput
    ) -> type[temporal_worker.WorkflowInboundInterceptor]:
        return _CarryingInbound


class _Refusing(temporal_worker.ActivityInboundInterceptor):
    def __init__(
        self, next: temporal_worker.ActivityInboundInterceptor, gateway_id: uuid.UUID
    ) -> None:
        super().__init__(next)
        self._gateway_id = gateway_id

    async def execute_activity(self, input: temporal_worker.ExecuteActivityInput) -> Any:
        claimed = _claimed(input.headers)
        if claimed != str(self._gateway_id):
            names = (
                f"no gateway (no {HEADER} header)" if claimed is None else f"gateway {claimed[:64]}"
            )
            message = (
                f"refused: this run names {names}; this worker acts for gateway"
                f" {self._gateway_id} only"
            )
            info = activity.info()
            log.warning(
                "%s %s of %s: %s", WRONG_GATEWAY, info.activity_type, info.workflow_id, message
            )
            raise ApplicationError(message, type=WRONG_GATEWAY, non_retryable=True)
        return await self.next.execute_activity(input)


class _CarryingInbound(temporal_worker.WorkflowInboundInterceptor):
    """Keeps the header the run started with, for everything the run starts."""

    def init(self, outbound: temporal_worker.WorkflowOutboundInterceptor) -> None:
        self._outbound = _CarryingOutbound(outbound)
        super().init(self._outbound)

    async def execute_workflow(self, input: temporal_worker.ExecuteWorkflowInput) -> Any:
        self._outbound.header = input.headers.get(HEADER)
        return await super().execute_workflow(input)


class _CarryingOutbound(temporal_worker.WorkflowOutboundInterceptor):
    header: Payload | None = None

    def _carry(self, input: _WithHeaders) -> None:
        # Without a header of its own the run passes none: its activities are refused.
        if self.header is not None:
            input.headers = {**input.headers, HEADER: self.header}

    def start_activity(
        self, input: temporal_worker.StartActivityInput
    ) -> workflow.ActivityHandle[Any]:
        self._carry(input)
        return super().start_activity(input)

    def start_local_activity(
        self, input: temporal_worker.StartLocalActivityInput
    ) -> workflow.ActivityHandle[Any]:
        self._carry(input)
        return super().start_local_activity(input)

    async def start_child_workflow(
        self, input: temporal_worker.StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        self._carry(input)
        if self.header is not None:
            input.memo = {**(input.memo or {}), MEMO_KEY: _claimed({HEADER: self.header})}
        return await super().start_child_workflow(input)

    def continue_as_new(self, input: temporal_worker.ContinueAsNewInput) -> NoReturn:
        self._carry(input)
        if self.header is not None:
            # Spelled out, so the next run keeps this run's memo as well as the id.
            memo = {**workflow.memo(), **(input.memo or {})}
            input.memo = {**memo, MEMO_KEY: _claimed({HEADER: self.header})}
        super().continue_as_new(input)
