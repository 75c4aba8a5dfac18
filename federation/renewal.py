"""Renewing a certificate on gateway B, as database steps the RenewCertificate workflow
composes: check the request, then pin the new serial in place of the old one.

The pin is one transaction guarded by the old serial, so two renewals racing produce
one winner and a clean refusal for the other. The old certificate is superseded, not
revoked at once: it stays accepted through an overlap window so requests in flight
finish, and is revoked at the CA when the window ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation import ledger
from federation.audit import audit_entry
from federation.db.models import Certificate, Grant, Peer, utcnow, wire_time
from federation.errors import FederationError, PeerMismatch
from federation.pki.csr import CheckedCSR, check_csr


class RenewalLost(FederationError):
    """Another renewal (or a revocation) replaced the certificate first."""

    kind = "RenewalLost"
    status = 409


class RenewalRefused(FederationError):
    """The grant or peer is no longer active: nothing to renew."""

    kind = "RenewalRefused"
    status = 403


@dataclass(frozen=True)
class Replay:
    """The certificate an earlier renewal with the same CSR already pinned."""

    cert_pem: str
    chain_pem: str
    serial: str
    not_after: datetime


@dataclass(frozen=True)
class ValidatedRenewal:
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    subject_user_id: uuid.UUID
    old_serial: str
    csr: CheckedCSR
    replay: Replay | None


async def validate_renewal(
    session: AsyncSession, *, grant_id: uuid.UUID, presented_serial: str, csr_pem: str
) -> ValidatedRenewal:
    """The CSR (same rules as enrollment; the CN stays the peer's) and the certificate it
    renews (the one pinned on the grant). The same CSR again finds its own result."""
    grant = await session.get(Grant, grant_id, populate_existing=True)
    if grant is None or grant.status != "active":
        raise RenewalRefused(f"grant is {grant.status if grant else 'unknown'}, not active")
    peer = await session.get(Peer, grant.peer_id, populate_existing=True)
    if peer is None or peer.state != "active" or not peer.common_name:
        raise RenewalRefused("peer is not active")
    csr = check_csr(csr_pem, expected_common_name=peer.common_name)
    replay = await _replay(session, grant_id, csr.fingerprint)
    if replay is None and grant.cert_serial != presented_serial:
        raise RenewalLost("this certificate was already replaced by a renewal")
    return ValidatedRenewal(grant.id, peer.id, grant.subject_user_id, presented_serial, csr, replay)


async def _replay(
    session: AsyncSession, grant_id: uuid.UUID, csr_fingerprint: str
) -> Replay | None:
    row = await session.scalar(
        select(Certificate).where(
            Certificate.grant_id == grant_id,
            Certificate.csr_fingerprint == csr_fingerprint,
            Certificate.purpose == "renewal",
            Certificate.state == "active",
            Certificate.revoke_after.is_(None),
        )
    )
    if row is None or not row.cert_pem or row.not_after is None:
        return None
    return Replay(row.cert_pem, row.chain_pem or "", row.serial, row.not_after)


@dataclass(frozen=True)
class Renewed:
    request_id: str
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    old_serial: str
    cert_pem: str
    serial: str
    not_after: datetime
    fingerprint: str
    issued_by: str
    overlap: timedelta


async def pin_renewal(session: AsyncSession, r: Renewed) -> datetime:
    """New serial pinned, old one superseded until the overlap ends, B's peer row and the
    audit updated: one transaction, guarded by the old serial. Returns the overlap end.

    Idempotent: a retry that finds the new serial already pinned succeeds.
    """
    now = utcnow()
    overlap_end = now + r.overlap
    async with session.begin():
        moved = await session.execute(
            update(Grant)
            .where(
                Grant.id == r.grant_id, Grant.status == "active", Grant.cert_serial == r.old_serial
            )
            .values(cert_serial=r.serial, cert_not_after=r.not_after, updated_at=now)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            pinned = await session.scalar(select(Grant.cert_serial).where(Grant.id == r.grant_id))
            if pinned == r.serial:
                row = await session.get(Certificate, r.old_serial)
                return row.revoke_after if row and row.revoke_after else overlap_end
            raise RenewalLost("another renewal or a revocation replaced the certificate first")
        if not await ledger.pin(session, r.serial):
            raise RenewalLost("the new certificate was withdrawn before it was pinned")
        await session.execute(
            update(Certificate)
            .where(Certificate.serial == r.old_serial, Certificate.state == "active")
            .values(
                state="superseded",
                superseded_at=now,
                revoke_after=overlap_end,
                revocation_reason=ledger.SUPERSEDED_REASON,
                updated_at=now,
            )
        )
        peer = await session.execute(
            update(Peer)
            .where(Peer.id == r.peer_id, Peer.cert_serial == r.old_serial)
            .values(
                cert_pem=r.cert_pem,
                cert_serial=r.serial,
                cert_not_after=r.not_after,
                cert_fingerprint=r.fingerprint,
                updated_at=now,
            )
        )
        if peer.rowcount != 1:  # type: ignore[attr-defined]
            raise PeerMismatch("the peer no longer holds the certificate being renewed")
        await ledger.decide_revocation(
            session,
            reason="superfluous certificate of this renewal",
            issued_by=r.issued_by,
            keep_active=True,
        )
        session.add(
            audit_entry(
                request_id=r.request_id,
                actor=f"peer:{r.peer_id}",
                verb="certificate.renew",
                resource="federation_grant",
                outcome="allowed",
                status_code=200,
                reason=f"replaces {r.old_serial}, accepted until {wire_time(overlap_end)}",
                grant_id=r.grant_id,
                peer_id=r.peer_id,
                cert_serial=r.serial,
            )
        )
    return overlap_end
