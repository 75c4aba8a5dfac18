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
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.db.models import AuditEntry, EnrollmentToken, Grant, Peer, utcnow
from federation.enrollment import release_grant_claims

ACTOR = "reconciler"
BATCH = 2000


@dataclass(frozen=True)
class ClaimedToken:
    token_hash: str
    grant_id: uuid.UUID
    peer_id: uuid.UUID


async def claimed_tokens_without_certificate(
    session: AsyncSession, *, claimed_before: datetime, limit: int = BATCH
) -> list[ClaimedToken]:
    """Tokens a redeem claimed before ``claimed_before`` and never finished.

    Served by the partial index on claimed, certificate-less tokens. The age
    bound keeps a run that has only just claimed out of the candidates.
    """
    rows = await session.execute(
        select(EnrollmentToken.token_hash, EnrollmentToken.grant_id, EnrollmentToken.peer_id)
        .where(
            EnrollmentToken.used_at.is_not(None),
            EnrollmentToken.cert_serial.is_(None),
            EnrollmentToken.burnt_at.is_(None),
            EnrollmentToken.used_at < claimed_before,
        )
        .limit(limit)
    )
    return [ClaimedToken(r.token_hash, r.grant_id, r.peer_id) for r in rows]


async def repair_claimed_tokens(
    session: AsyncSession, tokens: Sequence[ClaimedToken], *, request_id: str
) -> tuple[int, int]:
    """Claimed tokens whose runs are gone: release those within their TTL, expire the
    grants of the others. One transaction; returns (released, grants expired)."""
    if not tokens:
        return 0, 0
    now = utcnow()
    released = (
        await session.execute(
            update(EnrollmentToken)
            .where(
                EnrollmentToken.token_hash.in_([t.token_hash for t in tokens]),
                EnrollmentToken.used_at.is_not(None),
                EnrollmentToken.cert_serial.is_(None),
                EnrollmentToken.burnt_at.is_(None),
                EnrollmentToken.expires_at > now,
            )
            .values(used_at=None, csr_fingerprint=None)
            .returning(
                EnrollmentToken.token_hash, EnrollmentToken.grant_id, EnrollmentToken.peer_id
            )
        )
    ).all()
    await release_grant_claims(session, [t.token_hash for t in tokens])
    await _audit(
        session,
        request_id,
        "reconcile.release_claim",
        "federation_enrollment_token",
        [(grant_id, peer_id, None) for _, grant_id, peer_id in released],
        "claimed token with no live redeem run released",
    )
    done = {row.token_hash for row in released}
    lapsed = [t.grant_id for t in tokens if t.token_hash not in done]
    expired = (
        await _expire(
            session,
            lapsed,
            status="pending",
            reason="enrollment never completed",
            audit_reason="token claimed past its TTL with no live redeem run",
            request_id=request_id,
            now=now,
        )
        if lapsed
        else 0
    )
    await session.commit()
    return len(released), expired


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
    candidates = await session.scalars(
        select(Grant.id)
        .where(Grant.status == "pending", Grant.created_at < now - max_age, ~live_token)
        .limit(limit)
    )
    count = await _expire(
        session,
        list(candidates),
        status="pending",
        reason="pending longer than the maximum age",
        audit_reason="pending longer than the maximum age with no live token",
        request_id=request_id,
        now=now,
    )
    await session.commit()
    return count


async def expire_lapsed_grants(
    session: AsyncSession, *, request_id: str, limit: int = BATCH
) -> int:
    """``active`` grants whose certificate is past notAfter → ``expired``."""
    now = utcnow()
    candidates = await session.scalars(
        select(Grant.id).where(Grant.status == "active", Grant.cert_not_after < now).limit(limit)
    )
    count = await _expire(
        session,
        list(candidates),
        status="active",
        reason="certificate expired",
        audit_reason="certificate past notAfter",
        request_id=request_id,
        now=now,
    )
    await session.commit()
    return count


async def _expire(
    session: AsyncSession,
    grant_ids: Sequence[uuid.UUID],
    *,
    status: str,
    reason: str,
    audit_reason: str,
    request_id: str,
    now: datetime,
) -> int:
    """Grants still in ``status`` → ``expired`` in one statement, each audited."""
    rows = (
        await session.execute(
            update(Grant)
            .where(Grant.id.in_(grant_ids), Grant.status == status)
            .values(status="expired", reason=reason, enrolling_token_hash=None, updated_at=now)
            .returning(Grant.id, Grant.peer_id, Grant.cert_serial)
        )
    ).all()
    await _audit(
        session,
        request_id,
        "reconcile.expire_grant",
        "federation_grant",
        [(grant_id, peer_id, serial) for grant_id, peer_id, serial in rows],
        audit_reason,
    )
    return len(rows)


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


async def _audit(
    session: AsyncSession,
    request_id: str,
    verb: str,
    resource: str,
    subjects: Sequence[tuple[uuid.UUID | None, uuid.UUID | None, str | None]],
    reason: str,
) -> None:
    """One ``reconciler`` audit row per (grant, peer, serial), in one INSERT."""
    if not subjects:
        return
    now = utcnow()
    await session.execute(
        insert(AuditEntry),
        [
            {
                "request_id": request_id,
                "created_at": now,
                "actor": ACTOR,
                "verb": verb,
                "resource": resource,
                "outcome": "allowed",
                "status_code": 200,
                "reason": reason,
                "grant_id": grant_id,
                "peer_id": peer_id,
                "cert_serial": serial,
            }
            for grant_id, peer_id, serial in subjects
        ],
    )
