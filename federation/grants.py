"""Grants and their enrollment tokens, as the admin manages them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.db.models import EnrollmentToken, Grant, Peer, User, utcnow
from federation.errors import Conflict, InvalidInput, NotFound
from federation.paging import Position, keyset_page
from federation.scope import Scope
from federation.tokens import MAX_TTL_SECONDS, enrollment_url, hash_token, new_token


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    enrollment_url: str
    # Older unused tokens of the grant that this one replaced (they no longer work).
    withdrawn_tokens: int = 0


async def create_grant(
    session: AsyncSession,
    *,
    subject_user_id: uuid.UUID,
    peer_id: uuid.UUID,
    scope: Scope,
    actor: str,
    request_id: str,
) -> Grant:
    """Create a ``pending`` grant for a known user and a known, non-revoked peer."""
    if await session.get(User, subject_user_id) is None:
        raise NotFound("subject user not found")
    peer = await session.get(Peer, peer_id)
    if peer is None:
        raise NotFound("peer not found")
    if peer.state in ("revoked", "failed"):
        raise Conflict(f"peer is {peer.state}; register a new peer")
    grant = Grant(
        subject_user_id=subject_user_id,
        peer_id=peer_id,
        scope=scope.model_dump(mode="json"),
        status="pending",
    )
    session.add(grant)
    await session.flush()
    session.add(
        audit_entry(
            request_id=request_id,
            actor=actor,
            verb="grant.create",
            resource="federation_grant",
            outcome="allowed",
            status_code=201,
            grant_id=grant.id,
            peer_id=peer_id,
        )
    )
    await session.commit()
    return grant


async def list_grants(
    session: AsyncSession,
    *,
    peer_id: uuid.UUID | None = None,
    status: str | None = None,
    after: Position | None = None,
    limit: int | None = None,
) -> list[Grant]:
    """Grants by creation, oldest first; a page when ``after``/``limit`` are given."""
    query = keyset_page(select(Grant), Grant.created_at, Grant.id, after=after, limit=limit)
    if peer_id is not None:
        query = query.where(Grant.peer_id == peer_id)
    if status is not None:
        query = query.where(Grant.status == status)
    return list((await session.scalars(query)).all())


async def get_grant(session: AsyncSession, grant_id: uuid.UUID) -> Grant:
    grant = await session.get(Grant, grant_id)
    if grant is None:
        raise NotFound("grant not found")
    return grant


async def create_token(
    session: AsyncSession,
    grant_id: uuid.UUID,
    *,
    ttl_seconds: int,
    public_url: str,
    actor: str,
    request_id: str,
) -> IssuedToken:
    """Mint a single-use token for a pending grant, bound to the grant's peer (MED-3).

    Only the SHA-256 of the token is stored; the token is returned once. A grant has
    one redeemable token at a time: older unused tokens of the grant stop working now
    (a token whose redeem is already in flight is left to finish, and holds the grant).
    """
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(f"ttlSeconds must be between 1 and {MAX_TTL_SECONDS}")
    grant = await get_grant(session, grant_id)
    if grant.status != "pending":
        raise Conflict(f"grant is {grant.status}; tokens are only issued for pending grants")
    now = utcnow()
    withdrawn = await session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.grant_id == grant.id,
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.expires_at > now,
        )
        .values(expires_at=now)
    )
    withdrawn_count = int(withdrawn.rowcount)  # type: ignore[attr-defined]
    token = new_token()
    expires_at = now + timedelta(seconds=ttl_seconds)
    session.add(
        EnrollmentToken(
            token_hash=hash_token(token),
            grant_id=grant.id,
            peer_id=grant.peer_id,
            expires_at=expires_at,
        )
    )
    session.add(
        audit_entry(
            request_id=request_id,
            actor=actor,
            verb="token.create",
            resource="federation_enrollment_token",
            outcome="allowed",
            status_code=201,
            reason=f"{withdrawn_count} older unused token(s) withdrawn" if withdrawn_count else "",
            grant_id=grant.id,
            peer_id=grant.peer_id,
        )
    )
    await session.commit()
    return IssuedToken(token, expires_at, enrollment_url(public_url, token), withdrawn_count)
