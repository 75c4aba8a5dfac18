"""Revoking a grant: the database side, in one transaction. The RevokeGrant workflow then
carries the ledger's decisions to the CA."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation import ledger
from federation.audit import audit_entry
from federation.db.models import Certificate, Grant, Peer, utcnow
from federation.errors import NotFound


@dataclass(frozen=True)
class RevokedGrant:
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    # Ledger rows of the grant decided for revocation and not yet confirmed by the CA.
    pending_serials: list[str]
    # False when the grant was already revoked (a re-driven revocation).
    newly_revoked: bool
    peers_revoked: list[uuid.UUID]


async def revoke_grant_record(
    session: AsyncSession,
    grant_id: uuid.UUID,
    *,
    reason: str | None,
    actor: str,
    request_id: str,
) -> RevokedGrant:
    """Grant → ``revoked`` (final), every certificate of it decided for revocation, and
    every peer holding one of them → ``revoked``: one transaction, audited.

    The grant's serial is read by the same statement that revokes it, so an activation
    committing just before cannot slip a certificate past this. Calling it again on a
    revoked grant changes nothing and returns what the CA still has to revoke.
    """
    now = utcnow()
    revoked = (
        await session.execute(
            update(Grant)
            .where(Grant.id == grant_id, Grant.status != "revoked")
            .values(
                status="revoked",
                revoked_at=now,
                reason=reason,
                enrolling_token_hash=None,
                updated_at=now,
            )
            .returning(Grant.peer_id, Grant.cert_serial)
        )
    ).first()
    if revoked is None:
        peer_id = await session.scalar(select(Grant.peer_id).where(Grant.id == grant_id))
        if peer_id is None:
            raise NotFound("grant not found")
    else:
        peer_id = revoked.peer_id
        session.add(
            audit_entry(
                request_id=request_id,
                actor=actor,
                verb="grant.revoke",
                resource="federation_grant",
                outcome="allowed",
                status_code=200,
                reason=reason,
                grant_id=grant_id,
                peer_id=peer_id,
                cert_serial=revoked.cert_serial,
            )
        )
    await ledger.decide_revocation(session, reason="grant revoked", grant_id=grant_id)
    peers = await _revoke_holders(session, grant_id, request_id=request_id, actor=actor)
    pending = await ledger.pending_revocations(session, grant_id=grant_id)
    await session.commit()
    return RevokedGrant(grant_id, peer_id, pending, revoked is not None, peers)


async def _revoke_holders(
    session: AsyncSession, grant_id: uuid.UUID, *, request_id: str, actor: str
) -> list[uuid.UUID]:
    """Peers whose current certificate is one of the grant's → ``revoked``, audited."""
    serials = select(Certificate.serial).where(Certificate.grant_id == grant_id)
    rows = (
        await session.execute(
            update(Peer)
            .where(Peer.cert_serial.in_(serials), Peer.state != "revoked")
            .values(state="revoked", updated_at=utcnow())
            .returning(Peer.id, Peer.cert_serial)
        )
    ).all()
    for peer_id, serial in rows:
        session.add(
            audit_entry(
                request_id=request_id,
                actor=actor,
                verb="peer.revoke",
                resource="federation_peer",
                outcome="allowed",
                status_code=200,
                reason="its certificate was revoked with its grant",
                grant_id=grant_id,
                peer_id=peer_id,
                cert_serial=serial,
            )
        )
    return [peer_id for peer_id, _ in rows]


async def grant_revocation_unfinished(session: AsyncSession, grant_id: uuid.UUID) -> bool:
    """Whether a revoked grant still has certificates the CA has not confirmed revoked."""
    return bool(await ledger.pending_revocations(session, grant_id=grant_id, limit=1))
