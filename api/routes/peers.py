from __future__ import annotations

import uuid

from fastapi import APIRouter
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from api.deps import AdminDep, GatewayDep, RequestIdDep, SessionDep, TemporalDep
from api.schemas import (
    PeerCert,
    PeerCreate,
    PeerEnroll,
    PeerEnrollOut,
    PeerKeypair,
    PeerKeypairOut,
    PeerOut,
    PeerState,
    PeerWorkflow,
    problem_responses,
)
from api.state import Gateway
from federation import directory, requester
from federation.errors import CertificateRejected, InvalidInput
from federation.runs import peer_add_workflow_id
from federation.sealing import SealedBlobError
from workflows.common import PEER_ID
from workflows.peer_add import PeerAdd, PeerAddInput, PeerAddStatus

router = APIRouter(prefix="/api/admin/federation/peers", tags=["peers"])


@router.post(
    "",
    status_code=201,
    response_model=PeerOut,
    responses=problem_responses(400, 401, 403, 409, 413, 422),
)
async def create_peer(
    body: PeerCreate, session: SessionDep, actor: AdminDep, request_id: RequestIdDep
) -> PeerOut:
    """Register a remote peer that will enroll with this gateway (starts ``pending``)."""
    peer = await directory.create_peer(
        session,
        common_name=body.common_name,
        display_name=body.display_name,
        endpoint_url=body.endpoint_url,
        actor=actor,
        request_id=request_id,
    )
    return PeerOut.of(peer)


@router.get("", response_model=list[PeerOut], responses=problem_responses(401, 403, 422))
async def list_peers(
    session: SessionDep, _: AdminDep, state: PeerState | None = None
) -> list[PeerOut]:
    return [PeerOut.of(p) for p in await directory.list_peers(session, state=state)]


@router.get("/{peer_id}", response_model=PeerOut, responses=problem_responses(401, 403, 404, 422))
async def get_peer(
    peer_id: uuid.UUID,
    session: SessionDep,
    gateway: GatewayDep,
    _: AdminDep,
    workflow: bool = False,
) -> PeerOut:
    """A peer; while a peer-add runs for it (or with ``?workflow=true``), also its status."""
    out = PeerOut.of(await directory.get_peer(session, peer_id))
    if out.state == "pending" or workflow:
        out.workflow = await _peer_add_status(gateway, peer_id)
    return out


async def _peer_add_status(gateway: Gateway, peer_id: uuid.UUID) -> PeerWorkflow | None:
    try:
        client: Client = await gateway.temporal()
        handle = client.get_workflow_handle_for(PeerAdd.run, peer_add_workflow_id(str(peer_id)))
        status: PeerAddStatus = await handle.query(PeerAdd.status)
    except (RPCError, OSError, RuntimeError):
        return None  # no run (manual path) or Temporal unreachable: the row still answers
    return PeerWorkflow(id=handle.id, **vars(status))


@router.post(
    "/enroll",
    status_code=202,
    response_model=PeerEnrollOut,
    responses=problem_responses(400, 401, 403, 409, 413, 422, 503),
)
async def enroll(
    body: PeerEnroll,
    session: SessionDep,
    gateway: GatewayDep,
    temporal: TemporalDep,
    actor: AdminDep,
    request_id: RequestIdDep,
) -> PeerEnrollOut:
    """Enroll with a remote gateway: starts the ``PeerAdd`` workflow, answers at once.

    The URL (it holds the token) is stored sealed and read by the workflow's
    activities; it never enters workflow history.
    """
    settings = gateway.settings
    target = requester.parse_enrollment_url(
        body.enrollment_url, allow_http_loopback=settings.mosaic_enroll_allow_http_loopback
    )
    peer = await requester.create_enrolling_peer(
        session,
        gateway.sealer,
        target=target,
        display_name=body.display_name or target.host,
        actor=actor,
        request_id=request_id,
    )
    handle = await temporal.start_workflow(
        PeerAdd.run,
        PeerAddInput(request_id, str(peer.id), settings.mosaic_enroll_submit_seconds),
        id=peer_add_workflow_id(str(peer.id)),
        task_queue=settings.mosaic_task_queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(PEER_ID, str(peer.id))]),
        memo={"requestId": request_id},
        static_summary=f"Peer add: enroll with {target.host}",
        static_details=(
            f"This gateway enrolls with the remote gateway {target.host}: it asks what the"
            " token is for, makes a P-256 key (sealed at rest) and a CSR, submits it, checks"
            " the certificate's grant and user OIDs and stores an active peer. The"
            " enrollment URL stays sealed in the database; it is not in this history."
        ),
    )
    return PeerEnrollOut(peer_id=peer.id, workflow_id=handle.id)


@router.post(
    "/keypair",
    status_code=201,
    response_model=PeerKeypairOut,
    responses=problem_responses(400, 401, 403, 409, 413, 422),
)
async def keypair(
    body: PeerKeypair,
    session: SessionDep,
    gateway: GatewayDep,
    actor: AdminDep,
    request_id: RequestIdDep,
) -> PeerKeypairOut:
    """Manual path: a pending peer with a fresh sealed P-256 key; returns its CSR."""
    peer, csr_pem = await requester.create_keypair_peer(
        session,
        gateway.sealer,
        common_name=body.common_name,
        display_name=body.display_name,
        endpoint_url=body.endpoint_url,
        actor=actor,
        request_id=request_id,
    )
    return PeerKeypairOut(peer_id=peer.id, csr_pem=csr_pem)


@router.patch(
    "/{peer_id}/cert",
    response_model=PeerOut,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 422),
)
async def attach_certificate(
    peer_id: uuid.UUID,
    body: PeerCert,
    session: SessionDep,
    gateway: GatewayDep,
    actor: AdminDep,
    request_id: RequestIdDep,
) -> PeerOut:
    """Manual path: store the certificate the remote issued for our CSR.

    Refused (422) when its key is not ours or either Mosaic OID is missing.
    """
    peer = await requester.get_peer(session, peer_id)
    try:
        public_key = requester.client_public_key(gateway.sealer, peer)
    except SealedBlobError:
        raise InvalidInput("peer's sealed key does not open with the current secret") from None
    try:
        verified = requester.verify_received_certificate(
            body.cert_pem,
            body.cert_chain_pem or "",
            public_key=public_key,
            grant_id=None,
            subject_user_id=None,
            require_chain=False,
        )
    except CertificateRejected as exc:  # the admin's input, not a CA's answer: a 4xx
        raise InvalidInput(exc.message) from None
    await requester.store_certificate(
        session,
        peer_id,
        cert_pem=body.cert_pem,
        verified=verified,
        actor=actor,
        request_id=request_id,
    )
    return PeerOut.of(await requester.get_peer(session, peer_id))
