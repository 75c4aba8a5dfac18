from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryptography import x509
from fastapi import APIRouter, Response
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.service import RPCError

from api.deps import AdminDep, GatewayDep, RequestIdDep, SessionDep, TemporalDep
from api.paging import CreatedPage, CursorQuery, LimitQuery, paged_responses
from api.schemas import (
    PeerCert,
    PeerCreate,
    PeerEnroll,
    PeerEnrollOut,
    PeerKeypair,
    PeerKeypairOut,
    PeerLifecycle,
    PeerOut,
    PeerState,
    PeerWorkflow,
    problem_responses,
)
from api.state import Gateway
from federation import directory, requesting_peer
from federation.client_key import client_public_key
from federation.errors import CertificateRejected, InvalidInput
from federation.remote_trust import ca_fingerprint, verify_received_certificate
from federation.remote_url import AddressPolicy, parse_enrollment_url, parse_federation_url
from federation.runs import peer_add_workflow_id, peer_certificate_workflow_id
from federation.sealing import SealedBlobError
from workflows.common import PEER_ID
from workflows.peer_add import PeerAdd, PeerAddInput, PeerAddResult, PeerAddStatus
from workflows.peer_certificate import (
    LifecycleStatus,
    PeerCertificate,
    start_lifecycle,
)

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


@router.get("", response_model=list[PeerOut], responses=paged_responses(401, 403, 422))
async def list_peers(
    session: SessionDep,
    _: AdminDep,
    response: Response,
    state: PeerState | None = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> list[PeerOut]:
    """Peers, oldest first; with ``limit``, one page and ``X-Next-Cursor`` if more follow."""
    page = CreatedPage("peers", limit, cursor)
    rows = await directory.list_peers(session, state=state, after=page.after, limit=page.fetch)
    return [PeerOut.of(p) for p in page.trim(rows, response)]


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
    if out.cert_serial and out.federation_url:
        out.lifecycle = await _lifecycle_status(gateway, peer_id)
    return out


async def _lifecycle_status(gateway: Gateway, peer_id: uuid.UUID) -> PeerLifecycle | None:
    try:
        client: Client = await gateway.temporal()
        handle: WorkflowHandle[PeerCertificate, LifecycleStatus] = client.get_workflow_handle_for(
            PeerCertificate.run, peer_certificate_workflow_id(str(peer_id))
        )
        status: LifecycleStatus = await handle.query(PeerCertificate.status)
    except (RPCError, OSError, RuntimeError):
        return None  # no run, or Temporal unreachable: the row still answers
    return PeerLifecycle(id=handle.id, **vars(status))


async def _peer_add_status(gateway: Gateway, peer_id: uuid.UUID) -> PeerWorkflow | None:
    try:
        client: Client = await gateway.temporal()
        handle: WorkflowHandle[PeerAdd, PeerAddResult] = client.get_workflow_handle_for(
            PeerAdd.run, peer_add_workflow_id(str(peer_id))
        )
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
    activities; it never enters workflow history. With ``caFingerprint`` the
    remote's CA must be that one, checked before any CSR is sent.
    """
    settings = gateway.settings
    policy = AddressPolicy.from_settings(settings)
    target = parse_enrollment_url(body.enrollment_url, policy)
    peer = await requesting_peer.create_enrolling_peer(
        session,
        gateway.sealer,
        target=target,
        display_name=body.display_name or target.host,
        actor=actor,
        request_id=request_id,
    )
    handle = await temporal.start_workflow(
        PeerAdd.run,
        PeerAddInput(
            request_id,
            str(peer.id),
            settings.mosaic_enroll_submit_seconds,
            patience_seconds=settings.mosaic_enroll_patience_seconds,
            retry_interval_seconds=min(60.0, settings.mosaic_enroll_submit_seconds),
            ca_fingerprint=body.ca_fingerprint,
        ),
        id=peer_add_workflow_id(str(peer.id)),
        task_queue=await gateway.task_queue(),
        search_attributes=TypedSearchAttributes([SearchAttributePair(PEER_ID, str(peer.id))]),
        memo={"requestId": request_id},
        static_summary=f"Peer add: enroll with {target.host}",
        static_details=(
            f"This gateway enrolls with the remote gateway {target.host}: it asks what the"
            " token is for and which CA the remote uses, makes a P-256 key (sealed at rest)"
            " and a CSR, submits it, checks the certificate against the remote's pinned CA"
            " and the grant and user OIDs, and stores an active peer. The enrollment URL"
            " stays sealed in the database; it is not in this history."
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
    peer, csr_pem = await requesting_peer.create_keypair_peer(
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

    Refused (422) when its key is not ours or either Mosaic OID is missing. With
    ``caCertPem`` the certificate must chain to that CA root, which is pinned, and with
    ``federationUrl`` too the peer can call its remote and renew on its own: its
    certificate's lifecycle run starts at once, as after a ``peer add``.
    """
    peer = await requesting_peer.get_peer(session, peer_id)
    try:
        public_key = client_public_key(gateway.sealer, peer)
    except SealedBlobError:
        raise InvalidInput("peer's sealed key does not open with the current secret") from None
    pinned = _pinned_remote(body, gateway)
    try:
        verified = verify_received_certificate(
            body.cert_pem,
            body.cert_chain_pem or "",
            public_key=public_key,
            grant_id=None,
            subject_user_id=None,
            roots=pinned.roots if pinned else None,  # no root to pin without caCertPem
            require_chain=pinned is not None,
        )
    except CertificateRejected as exc:  # the admin's input, not a CA's answer: a 4xx
        raise InvalidInput(exc.message) from None
    await requesting_peer.store_certificate(
        session,
        peer_id,
        cert_pem=body.cert_pem,
        verified=verified,
        actor=actor,
        request_id=request_id,
        chain_pem=body.cert_chain_pem or "",
        remote=pinned.identity if pinned else None,
    )
    stored = PeerOut.of(await requesting_peer.get_peer(session, peer_id))
    await session.rollback()
    if stored.federation_url and stored.remote_ca_fingerprint:
        # Renewal needs both the remote's listener and its pinned root; without them the
        # certificate simply lives until its notAfter, as the admin supplied it.
        await start_lifecycle(
            await gateway.temporal(),
            peer_id=str(peer_id),
            grant_id=verified.grant_id,
            task_queue=await gateway.task_queue(),
            request_id=request_id,
        )
    return stored


@dataclass(frozen=True)
class _Pinned:
    roots: list[x509.Certificate]
    identity: requesting_peer.RemoteIdentity


def _pinned_remote(body: PeerCert, gateway: Gateway) -> _Pinned | None:
    if not body.ca_cert_pem:
        if body.federation_url:
            raise InvalidInput("federationUrl: needs caCertPem, the CA the listener is pinned to")
        return None
    try:
        roots = x509.load_pem_x509_certificates(body.ca_cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidInput("caCertPem: not a PEM certificate") from None
    url = None
    if body.federation_url:
        url = parse_federation_url(
            body.federation_url, AddressPolicy.from_settings(gateway.settings)
        )
    return _Pinned(
        roots, requesting_peer.RemoteIdentity(body.ca_cert_pem, ca_fingerprint(roots[0]), url)
    )
