"""Repairs the reconcile workflow makes: whatever the saga could not finish.

Each function selects candidates through an index (claimed tokens without a
certificate; grants by status and age or expiry; peers by state) and bounds the
batch, so a run costs what its candidates cost, not what the tables hold.
Every repair is guarded by the state it repairs and writes a ``reconciler``
audit row in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Row, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.db.models import EnrollmentToken, Grant, Peer, utcnow

ACTOR = "reconciler"
BATCH = 500


@dataclass(frozen=True)
class ClaimedToken:
    token_hash: str
    grant_id: uuid.UUID
    peer_id: uuid.UUID


async def claimed_tokens_without_certificate(
    session: AsyncSession, *, limit: int = BATCH
) -> list[ClaimedToken]:
    """Tokens a redeem claimed but never finished (served by the partial index)."""
    rows = await session.execute(
        select(EnrollmentToken.token_hash, EnrollmentToken.grant_id, EnrollmentToken.peer_id)
        .where(
            EnrollmentToken.used_at.is_not(None),
            EnrollmentToken.cert_serial.is_(None),
            EnrollmentToken.burnt_at.is_(None),
        )
        .limit(limit)
    )
    return [ClaimedToken(r.token_hash, r.grant_id, r.peer_id) for r in rows]


async def repair_claimed_token(
    session: AsyncSession, token: ClaimedToken, *, request_id: str
) -> str:
    """A claimed token whose run is gone: release it within its TTL, else expire the grant.

    Returns ``"released"``, ``"grant_expired"`` or ``"none"`` (someone else repaired it).
    """
    now = utcnow()
    released = await session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == token.token_hash,
            EnrollmentToken.used_at.is_not(None),
            EnrollmentToken.cert_serial.is_(None),
            EnrollmentToken.burnt_at.is_(None),
            EnrollmentToken.expires_at > now,
        )
        .values(used_at=None, csr_fingerprint=None)
    )
    if released.rowcount == 1:  # type: ignore[attr-defined]
        _audit(
            session,
            request_id,
            "reconcile.release_claim",
            "federation_enrollment_token",
            token.grant_id,
            token.peer_id,
            "claimed token with no live redeem run released",
        )
        await session.commit()
        return "released"
    expired = await session.execute(
        update(Grant)
        .where(Grant.id == token.grant_id, Grant.status == "pending")
        .values(status="expired", reason="enrollment never completed", updated_at=now)
    )
    if expired.rowcount == 1:  # type: ignore[attr-defined]
        _audit(
            session,
            request_id,
            "reconcile.expire_grant",
            "federation_grant",
            token.grant_id,
            token.peer_id,
            "token claimed past its TTL with no live redeem run",
        )
        await session.commit()
        return "grant_expired"
    await session.rollback()
    return "none"


async def expire_stale_pending_grants(
    session: AsyncSession, *, max_age: timedelta, request_id: str, limit: int = BATCH
) -> int:
    """``pending`` grants older than ``max_age`` with no live token → ``expired``."""
    now = utcnow()
    live_token = exists().where(
        EnrollmentToken.grant_id == Grant.id,
        or_(
            and_(EnrollmentToken.used_at.is_(None), EnrollmentToken.expires_at > now),
            and_(
                EnrollmentToken.used_at.is_not(None),
                EnrollmentToken.cert_serial.is_(None),
                EnrollmentToken.burnt_at.is_(None),
            ),
        ),
    )
    candidates = (
        await session.execute(
            select(Grant.id, Grant.peer_id, Grant.cert_serial)
            .where(Grant.status == "pending", Grant.created_at < now - max_age, ~live_token)
            .limit(limit)
        )
    ).all()
    return await _expire_grants(
        session,
        candidates,
        status="pending",
        reason="pending longer than the maximum age",
        audit_reason="pending longer than the maximum age with no live token",
        request_id=request_id,
    )


async def expire_lapsed_grants(
    session: AsyncSession, *, request_id: str, limit: int = BATCH
) -> int:
    """``active`` grants whose certificate is past notAfter → ``expired``."""
    now = utcnow()
    candidates = (
        await session.execute(
            select(Grant.id, Grant.peer_id, Grant.cert_serial)
            .where(Grant.status == "active", Grant.cert_not_after < now)
            .limit(limit)
        )
    ).all()
    return await _expire_grants(
        session,
        candidates,
        status="active",
        reason="certificate expired",
        audit_reason="certificate past notAfter",
        request_id=request_id,
    )


async def _expire_grants(
    session: AsyncSession,
    candidates: Sequence[Row[uuid.UUID, uuid.UUID, str | None]],
    *,
    status: str,
    reason: str,
    audit_reason: str,
    request_id: str,
) -> int:
    """Each candidate still in ``status`` → ``expired``, audited; returns how many."""
    count = 0
    for grant_id, peer_id, serial in candidates:
        done = await session.execute(
            update(Grant)
            .where(Grant.id == grant_id, Grant.status == status)
            .values(status="expired", reason=reason, updated_at=utcnow())
        )
        if done.rowcount == 1:  # type: ignore[attr-defined]
            _audit(
                session,
                request_id,
                "reconcile.expire_grant",
                "federation_grant",
                grant_id,
                peer_id,
                audit_reason,
                cert_serial=serial,
            )
            count += 1
    await session.commit()
    return count


async def enrolling_peers(
    session: AsyncSession, *, older_than: timedelta, limit: int = BATCH
) -> list[uuid.UUID]:
    """Requesting-side peers still ``pending`` with a sealed enrollment URL (a peer-add)."""
    cutoff = utcnow() - older_than
    rows = await session.scalars(
        select(Peer.id)
        .where(
            Peer.state == "pending",
            Peer.enrollment_url_sealed.is_not(None),
            Peer.created_at < cutoff,
        )
        .limit(limit)
    )
    return list(rows)


def _audit(
    session: AsyncSession,
    request_id: str,
    verb: str,
    resource: str,
    grant_id: uuid.UUID | None,
    peer_id: uuid.UUID | None,
    reason: str,
    *,
    cert_serial: str | None = None,
) -> None:
    session.add(
        audit_entry(
            request_id=request_id,
            actor=ACTOR,
            verb=verb,
            resource=resource,
            outcome="allowed",
            status_code=200,
            reason=reason,
            grant_id=grant_id,
            peer_id=peer_id,
            cert_serial=cert_serial,
        )
    )
