"""Revoking a grant: the database side. The RevokeGrant workflow also revokes the
certificate at the CA between these two steps."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.db.models import Grant, Peer, utcnow
from federation.errors import Conflict, NotFound


@dataclass(frozen=True)
class RevokedGrant:
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    cert_serial: str | None


async def revoke_grant_record(
    session: AsyncSession,
    grant_id: uuid.UUID,
    *,
    reason: str | None,
    actor: str,
    request_id: str,
) -> RevokedGrant:
    """Grant → ``revoked`` (guarded; final) with the audited reason.

    Idempotent for a retried step: a grant this same request already revoked
    is returned as it is; one revoked by someone else is a 409.
    """
    grant = await session.get(Grant, grant_id, populate_existing=True)
    if grant is None:
        raise NotFound("grant not found")
    now = utcnow()
    done = await session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.status != "revoked")
        .values(status="revoked", revoked_at=now, reason=reason, updated_at=now)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        if grant.status == "revoked" and grant.reason == reason:
            return RevokedGrant(grant.id, grant.peer_id, grant.cert_serial)
        raise Conflict("grant is already revoked")
    session.add(
        audit_entry(
            request_id=request_id,
            actor=actor,
            verb="grant.revoke",
            resource="federation_grant",
            outcome="allowed",
            status_code=200,
            reason=reason,
            grant_id=grant.id,
            peer_id=grant.peer_id,
            cert_serial=grant.cert_serial,
        )
    )
    await session.commit()
    return RevokedGrant(grant.id, grant.peer_id, grant.cert_serial)


async def mark_peer_revoked(
    session: AsyncSession, peer_id: uuid.UUID, *, cert_serial: str, request_id: str
) -> bool:
    """The peer whose current certificate was the grant's → ``revoked``."""
    done = await session.execute(
        update(Peer)
        .where(Peer.id == peer_id, Peer.cert_serial == cert_serial, Peer.state == "active")
        .values(state="revoked", updated_at=utcnow())
    )
    revoked = bool(done.rowcount == 1)  # type: ignore[attr-defined]
    if revoked:
        session.add(
            audit_entry(
                request_id=request_id,
                actor="revoke-grant",
                verb="peer.revoke",
                resource="federation_peer",
                outcome="allowed",
                status_code=200,
                reason="certificate revoked at the CA with its grant",
                peer_id=peer_id,
                cert_serial=cert_serial,
            )
        )
    await session.commit()
    return revoked
