"""The requesting gateway's peer row (A): our credential towards a remote gateway.

Its states: ``pending`` while a peer add (or the manual path) runs, then
``active`` with the certificate and the remote's pinned CA, or ``failed`` with a
one-line reason and the key and enrollment URL wiped. The enrollment URL holds
the token: it is sealed like the key until enrollment ends and is then wiped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.client_key import (
    build_csr,
    new_client_key,
    open_client_key,
    seal_client_key,
)
from federation.db.models import Peer, utcnow
from federation.directory import add_peer
from federation.errors import Conflict, NotFound
from federation.pki.certs import VerifiedCertificate
from federation.remote_answers import one_line
from federation.remote_url import RemoteTarget
from federation.sealing import Sealer

FAILURE_REASON_MAX = 500


def enrollment_url_aad(peer_id: uuid.UUID) -> str:
    return f"federation_peers:{peer_id}:enrollment_url_sealed"


@dataclass(frozen=True)
class RemoteIdentity:
    """What A keeps of the remote at activation: its CA root and its listener."""

    ca_pem: str
    ca_fingerprint: str
    federation_url: str | None


async def create_enrolling_peer(
    session: AsyncSession,
    sealer: Sealer,
    *,
    target: RemoteTarget,
    display_name: str,
    actor: str,
    request_id: str,
) -> Peer:
    """A ``pending`` peer holding the sealed enrollment URL for the peer-add workflow.

    Its common name is unknown until the remote's preflight names it.
    """
    peer_id = uuid.uuid4()
    peer = Peer(
        id=peer_id,
        common_name=None,
        display_name=display_name,
        endpoint_url=target.base_url,
        state="pending",
        enrollment_url_sealed=sealer.seal(target.url.encode(), aad=enrollment_url_aad(peer_id)),
    )
    await add_peer(session, peer, verb="peer.enroll", actor=actor, request_id=request_id)
    return peer


async def create_keypair_peer(
    session: AsyncSession,
    sealer: Sealer,
    *,
    common_name: str,
    display_name: str,
    endpoint_url: str | None,
    actor: str,
    request_id: str,
) -> tuple[Peer, str]:
    """The manual path: a pending peer with a fresh sealed key; returns it and its CSR."""
    peer_id = uuid.uuid4()
    key = new_client_key()
    peer = Peer(
        id=peer_id,
        common_name=common_name,
        display_name=display_name,
        endpoint_url=endpoint_url,
        state="pending",
        client_key_sealed=seal_client_key(sealer, peer_id, key),
    )
    await add_peer(session, peer, verb="peer.keypair", actor=actor, request_id=request_id)
    return peer, build_csr(key, common_name)


async def get_peer(session: AsyncSession, peer_id: uuid.UUID) -> Peer:
    peer = await session.get(Peer, peer_id, populate_existing=True)
    if peer is None:
        raise NotFound("peer not found")
    return peer


async def read_enrollment_url(session: AsyncSession, sealer: Sealer, peer_id: uuid.UUID) -> str:
    peer = await get_peer(session, peer_id)
    if peer.state != "pending" or not peer.enrollment_url_sealed:
        raise Conflict(f"peer is {peer.state}; its enrollment URL is gone")
    return sealer.open(peer.enrollment_url_sealed, aad=enrollment_url_aad(peer.id)).decode()


async def record_preflight(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    common_name: str,
    grant_id: str,
    subject_user_id: str,
) -> None:
    """Keep what the remote said the token is for; the CN must be ours alone."""
    peer = await get_peer(session, peer_id)
    if peer.state != "pending":
        raise Conflict(f"peer is {peer.state}, not pending")
    if peer.common_name not in (None, common_name):
        raise Conflict("the remote names a different common name than before")
    peer.common_name = common_name
    peer.remote_grant_id = grant_id
    peer.remote_subject_user_id = subject_user_id
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"another local peer already uses the common name {common_name}") from None


async def ensure_client_csr(session: AsyncSession, sealer: Sealer, peer_id: uuid.UUID) -> str:
    """Generate and seal the client key on first call (reuse it on retries); return a CSR."""
    peer = await get_peer(session, peer_id)
    if peer.state != "pending":
        raise Conflict(f"peer is {peer.state}, not pending")
    if not peer.common_name:
        raise Conflict("peer has no common name yet")
    common_name = peer.common_name
    if peer.client_key_sealed:
        key = open_client_key(sealer, peer)
    else:
        key = new_client_key()
        result = await session.execute(
            update(Peer)
            .where(Peer.id == peer_id, Peer.client_key_sealed.is_(None))
            .values(client_key_sealed=seal_client_key(sealer, peer_id, key), updated_at=utcnow())
        )
        await session.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            key = open_client_key(sealer, await get_peer(session, peer_id))
    return build_csr(key, common_name)


async def store_certificate(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    cert_pem: str,
    verified: VerifiedCertificate,
    actor: str,
    request_id: str,
    remote: RemoteIdentity | None = None,
    chain_pem: str = "",
) -> None:
    """Peer ``pending`` → ``active`` with its certificate (and, after a peer add, the
    remote's pinned CA and listener URL); the enrollment URL is wiped.

    Idempotent: a retry that finds the peer active with this serial succeeds.
    """
    now = utcnow()
    pinned = (
        {
            "remote_ca_pem": remote.ca_pem,
            "remote_ca_fingerprint": remote.ca_fingerprint,
            "federation_url": remote.federation_url,
        }
        if remote is not None
        else {}
    )
    result = await session.execute(
        update(Peer)
        .where(Peer.id == peer_id, Peer.state == "pending")
        .values(
            state="active",
            cert_pem=cert_pem,
            cert_chain_pem=chain_pem or None,
            cert_serial=verified.serial,
            cert_not_after=verified.not_after,
            cert_fingerprint=verified.fingerprint_sha256,
            remote_grant_id=verified.grant_id,
            remote_subject_user_id=verified.subject_user_id,
            enrollment_url_sealed=None,
            failure_reason=None,
            updated_at=now,
            **pinned,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        current = await session.scalar(
            select(Peer.cert_serial).where(Peer.id == peer_id, Peer.state == "active")
        )
        if current == verified.serial:
            return
        raise Conflict("peer is no longer pending")
    session.add(
        audit_entry(
            request_id=request_id,
            actor=actor,
            verb="peer.enroll",
            resource="federation_peer",
            outcome="allowed",
            status_code=200,
            peer_id=peer_id,
            cert_serial=verified.serial,
        )
    )
    await session.commit()


async def mark_failed(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    reason: str,
    status_code: int,
    request_id: str,
    actor: str = "peer-add",
) -> bool:
    """Peer ``pending`` → ``failed``: key and enrollment URL wiped, reason kept, audited.

    The reason is stored as one clean line, whatever produced it.
    """
    reason = one_line(reason, FAILURE_REASON_MAX) or "peer add failed"
    result = await session.execute(
        update(Peer)
        .where(Peer.id == peer_id, Peer.state == "pending")
        .values(
            state="failed",
            failure_reason=reason,
            client_key_sealed=None,
            enrollment_url_sealed=None,
            updated_at=utcnow(),
        )
    )
    failed = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    if failed:
        session.add(
            audit_entry(
                request_id=request_id,
                actor=actor,
                verb="peer.enroll",
                resource="federation_peer",
                outcome="denied",
                status_code=status_code,
                reason=reason,
                peer_id=peer_id,
            )
        )
    await session.commit()
    return failed


async def mark_revoked_by_remote(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    serial: str,
    reason: str,
    request_id: str,
    actor: str = "federation-client",
) -> bool:
    """The remote revoked this peer's certificate: the peer → ``revoked``, audited.

    Guarded by the serial the remote refused, so a certificate already replaced by a
    renewal does not revoke the peer that now holds a newer one.
    """
    reason = one_line(f"revoked by the remote: {reason}", FAILURE_REASON_MAX)
    result = await session.execute(
        update(Peer)
        .where(
            Peer.id == peer_id,
            Peer.cert_serial == serial,
            Peer.state.in_(("active", "degraded")),
        )
        .values(state="revoked", failure_reason=reason, next_key_sealed=None, updated_at=utcnow())
    )
    revoked = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    if revoked:
        session.add(
            audit_entry(
                request_id=request_id,
                actor=actor,
                verb="peer.revoke",
                resource="federation_peer",
                outcome="allowed",
                status_code=403,
                reason=reason,
                peer_id=peer_id,
                cert_serial=serial,
            )
        )
    await session.commit()
    return revoked
