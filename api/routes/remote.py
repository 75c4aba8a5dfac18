"""The requesting side's calls to a peer's remote (gateway A): federated requests over
mTLS as that peer, and renewing its certificate now. The lifecycle run does the renewal
itself on schedule; these routes are the admin's levers."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.deps import AdminDep, GatewayDep, RequestIdDep, SessionDep, TemporalDep
from api.schemas import PeerRenewOut, PeerRequest, RemoteProblem, problem_responses
from api.state import Gateway
from federation import requesting_peer
from federation.errors import Conflict, InvalidInput
from federation.outbound import call_as_peer
from federation.peer_lifecycle import RENEWABLE
from federation.runs import peer_certificate_workflow_id
from workflows.peer_certificate import (
    LifecycleStatus,
    PeerCertificate,
    PeerCertificateInput,
    lifecycle_start,
)

router = APIRouter(prefix="/api/admin/federation/peers", tags=["peers"])


@router.post(
    "/{peer_id}/renew",
    status_code=202,
    response_model=PeerRenewOut,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def renew_now(
    peer_id: uuid.UUID,
    session: SessionDep,
    gateway: GatewayDep,
    temporal: TemporalDep,
    _: AdminDep,
    request_id: RequestIdDep,
) -> PeerRenewOut:
    """Renew this peer's certificate now: signal ``renew_now`` to its lifecycle run (and
    start the run if it is missing). The answer comes at once; follow ``peer show``."""
    peer = await requesting_peer.get_peer(session, peer_id)
    if peer.state not in RENEWABLE or not peer.cert_serial:
        raise Conflict(f"peer is {peer.state}; there is no certificate to renew")
    grant_id = peer.remote_grant_id
    await session.rollback()
    handle = await temporal.start_workflow(
        PeerCertificate.run,
        PeerCertificateInput(str(peer_id), request_id),
        task_queue=await gateway.task_queue(),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="renew_now",
        **lifecycle_start(str(peer_id), grant_id),
    )
    return PeerRenewOut(peer_id=peer_id, workflow_id=handle.id)


@router.post(
    "/{peer_id}/requests",
    responses={
        **problem_responses(400, 401, 403, 404, 409, 413, 422),
        502: {"model": RemoteProblem, "description": "the remote refused, or TLS failed"},
        504: {"model": RemoteProblem, "description": "the remote could not be reached"},
    },
)
async def call_remote(
    peer_id: uuid.UUID,
    body: PeerRequest,
    session: SessionDep,
    gateway: GatewayDep,
    _: AdminDep,
    request_id: RequestIdDep,
) -> JSONResponse:
    """Call the peer's remote gateway over mTLS, as this peer, and return its answer.

    A refusal is a 502 (504 when unreachable) whose ``remote.reason`` names its class:
    ``tls``, ``unauthenticated`` (401), ``forbidden`` (403), ``revoked`` (403 and the
    remote says the certificate is revoked: the peer is now ``revoked`` here too),
    ``not_found`` (404), ``conflict``, ``refused``, ``unavailable``, ``unreachable``.
    """
    await requesting_peer.get_peer(session, peer_id)  # 404 before anything else
    await session.rollback()  # no connection held while the remote answers
    method, path, payload = _remote_call(body)
    reply = await call_as_peer(
        gateway.sessions,
        gateway.sealer,
        gateway.channels(),
        peer_id,
        method,
        path,
        payload,
        request_id=request_id,
    )
    if reply.ok:
        return JSONResponse(reply.body)
    if reply.reason == "revoked":
        await _stop_lifecycle(gateway, peer_id, reply.detail)
    status = 504 if reply.reason == "unreachable" else 502
    return JSONResponse(
        {
            "detail": f"remote refused ({reply.reason}): {reply.detail}",
            "remote": {"status": reply.status, "reason": reply.reason},
        },
        status_code=status,
    )


def _remote_call(body: PeerRequest) -> tuple[str, str, dict[str, object] | None]:
    """(method, path under /api/federation/v1/, JSON body) of a requested verb."""
    if body.verb == "capabilities":
        return "GET", "capabilities", None
    if not body.resource:
        raise InvalidInput(f"resource: required for {body.verb}")
    if body.verb == "get":
        if not body.id:
            raise InvalidInput("id: required for get")
        return "GET", f"get/{body.resource}/{body.id}", None
    return "POST", f"list/{body.resource}", {"limit": body.limit, "cursor": body.cursor}


async def _stop_lifecycle(gateway: Gateway, peer_id: uuid.UUID, reason: str) -> None:
    """A revoked peer's lifecycle run ends now (best effort: it also ends on its own)."""
    try:
        client = await gateway.temporal()
        handle: WorkflowHandle[PeerCertificate, LifecycleStatus] = client.get_workflow_handle_for(
            PeerCertificate.run, peer_certificate_workflow_id(str(peer_id))
        )
        await handle.signal(PeerCertificate.stop, reason)
    except (RPCError, OSError, RuntimeError):
        pass
