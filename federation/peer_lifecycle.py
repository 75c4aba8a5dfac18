"""The requesting side's certificate over its life (gateway A): when to renew, a fresh key
for each renewal, the checks the new certificate passes, and the swap.

A renewal's key is generated and sealed at once in its own column, and reused if the
renewal is retried (the remote answers the same CSR with the same certificate). The
swap puts the new certificate, its chain and its key in place of the old ones in one
transaction, guarded by the old serial.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.client_key import (
    build_csr,
    new_client_key,
    next_key_aad,
    open_sealed_key,
    seal_client_key,
)
from federation.db.models import Peer, utcnow
from federation.errors import Conflict, NotFound
from federation.pki.certs import VerifiedCertificate
from federation.pki.fingerprints import public_key_der
from federation.remote_answers import one_line
from federation.remote_trust import verify_received_certificate
from federation.sealing import Sealer

# A peer in these states holds a certificate worth renewing.
RENEWABLE = ("active", "degraded")
REASON_MAX = 500


@dataclass(frozen=True)
class HeldCertificate:
    peer_id: uuid.UUID
    state: str
    serial: str
    not_before: datetime
    not_after: datetime
    grant_id: str | None


async def held_certificate(session: AsyncSession, peer_id: uuid.UUID) -> HeldCertificate | None:
    """The certificate a requesting-side peer holds now, or None (no such peer, or one that
    enrolled nowhere: nothing to renew)."""
    peer = await session.get(Peer, peer_id, populate_existing=True)
    if peer is None or not peer.cert_pem or not peer.cert_serial or not peer.client_key_sealed:
        return None
    cert = x509.load_pem_x509_certificate(peer.cert_pem.encode("ascii"))
    return HeldCertificate(
        peer.id,
        peer.state,
        peer.cert_serial,
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        peer.remote_grant_id,
    )


async def renewal_csr(session: AsyncSession, sealer: Sealer, peer_id: uuid.UUID) -> str:
    """The CSR of the renewal under way: a fresh P-256 key, sealed at once, made on the
    first call and reused by every retry until the swap."""
    peer = await _peer(session, peer_id)
    common_name = peer.common_name
    if peer.state not in RENEWABLE or not common_name:
        raise Conflict(f"peer is {peer.state}; nothing to renew")
    if peer.next_key_sealed is None:
        key = new_client_key()
        sealed = seal_client_key(sealer, peer_id, key, aad=next_key_aad(peer_id))
        made = await session.execute(
            update(Peer)
            .where(Peer.id == peer_id, Peer.next_key_sealed.is_(None))
            .values(next_key_sealed=sealed, updated_at=utcnow())
        )
        await session.commit()
        if made.rowcount != 1:  # type: ignore[attr-defined]  # another attempt won the race
            peer = await _peer(session, peer_id)
    if peer.next_key_sealed is not None:
        key = open_sealed_key(sealer, peer.next_key_sealed, aad=next_key_aad(peer_id))
    return build_csr(key, common_name)


async def swap_certificate(
    session: AsyncSession,
    sealer: Sealer,
    peer_id: uuid.UUID,
    *,
    old_serial: str,
    cert_pem: str,
    chain_pem: str,
    request_id: str,
) -> VerifiedCertificate:
    """Check the renewed certificate as at enrollment (both OIDs the same grant and user,
    the key is the renewal's, the chain reaches the pinned CA), then swap certificate,
    chain and key in one transaction guarded by the old serial. Idempotent."""
    peer = await _peer(session, peer_id)
    if peer.cert_serial != old_serial:
        current = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
        if peer.cert_serial == format(current.serial_number, "x"):
            return _already(peer, current)
        raise Conflict("the peer's certificate changed while it was being renewed")
    if peer.next_key_sealed is None or not peer.remote_ca_pem:
        raise Conflict("no renewal under way for this peer")
    key = open_sealed_key(sealer, peer.next_key_sealed, aad=next_key_aad(peer_id))
    verified = verify_received_certificate(
        cert_pem,
        chain_pem,
        public_key=public_key_der(key.public_key()),
        grant_id=peer.remote_grant_id,
        subject_user_id=peer.remote_subject_user_id,
        roots=x509.load_pem_x509_certificates(peer.remote_ca_pem.encode("ascii")),
    )
    now = utcnow()
    swapped = await session.execute(
        update(Peer)
        .where(Peer.id == peer_id, Peer.cert_serial == old_serial, Peer.state.in_(RENEWABLE))
        .values(
            state="active",
            cert_pem=cert_pem,
            cert_chain_pem=chain_pem or None,
            cert_serial=verified.serial,
            cert_not_after=verified.not_after,
            cert_fingerprint=verified.fingerprint_sha256,
            client_key_sealed=seal_client_key(sealer, peer_id, key),
            next_key_sealed=None,
            failure_reason=None,
            updated_at=now,
        )
    )
    if swapped.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise Conflict("the peer was revoked or changed while it was being renewed")
    session.add(
        audit_entry(
            request_id=request_id,
            actor="peer-certificate",
            verb="peer.renew",
            resource="federation_peer",
            outcome="allowed",
            status_code=200,
            reason=f"replaces {old_serial}",
            peer_id=peer_id,
            cert_serial=verified.serial,
        )
    )
    await session.commit()
    return verified


def _already(peer: Peer, current: x509.Certificate) -> VerifiedCertificate:
    # A retried swap after its commit: what the first one stored.
    return VerifiedCertificate(
        serial=str(peer.cert_serial),
        not_after=current.not_valid_after_utc,
        not_before=current.not_valid_before_utc,
        fingerprint_sha256=str(peer.cert_fingerprint),
        grant_id=str(peer.remote_grant_id),
        subject_user_id=str(peer.remote_subject_user_id),
        common_name=str(peer.common_name),
    )


async def mark(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    serial: str,
    state: str,
    reason: str | None,
    request_id: str,
) -> bool:
    """Peer → ``degraded`` (renewal failing, with why), ``active`` again, or ``expired``
    (past notAfter, not renewed), guarded by the serial it is about; audited."""
    reason = one_line(reason, REASON_MAX) if reason else None
    done = await session.execute(
        update(Peer)
        .where(Peer.id == peer_id, Peer.cert_serial == serial, Peer.state.in_(RENEWABLE))
        .values(state=state, failure_reason=reason, updated_at=utcnow())
        .returning(Peer.state)
    )
    changed = done.first() is not None
    if changed and state == "expired":
        session.add(
            audit_entry(
                request_id=request_id,
                actor="peer-certificate",
                verb="peer.expire",
                resource="federation_peer",
                outcome="denied",
                status_code=410,
                reason=reason,
                peer_id=peer_id,
                cert_serial=serial,
            )
        )
    await session.commit()
    return changed


async def lifecycle_candidates(
    session: AsyncSession, *, limit: int = 2000
) -> list[tuple[uuid.UUID, str | None]]:
    """(peer id, remote grant id) of requesting-side peers whose certificate should have a
    lifecycle run."""
    rows = await session.execute(
        select(Peer.id, Peer.remote_grant_id)
        .where(
            Peer.state.in_(RENEWABLE),
            Peer.client_key_sealed.is_not(None),
            Peer.cert_serial.is_not(None),
            # Renewal calls the remote's listener, verified against its pinned root.
            Peer.federation_url.is_not(None),
            Peer.remote_ca_pem.is_not(None),
        )
        .limit(limit)
    )
    return [(peer_id, grant_id) for peer_id, grant_id in rows]


async def _peer(session: AsyncSession, peer_id: uuid.UUID) -> Peer:
    peer = await session.get(Peer, peer_id, populate_existing=True)
    if peer is None:
        raise NotFound("peer not found")
    return peer
