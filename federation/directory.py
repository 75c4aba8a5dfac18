"""Users and peers as the admin registers them (CRUD, no workflow involved)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.db.models import Peer, User
from federation.errors import Conflict, NotFound
from federation.paging import Position, keyset_page


async def create_user(session: AsyncSession, *, name: str, email: str) -> User:
    """Create a user; a duplicate email is a 409."""
    user = User(name=name, email=email.lower())
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("a user with this email already exists") from None
    await session.commit()
    return user


async def list_users(
    session: AsyncSession, *, after: Position | None = None, limit: int | None = None
) -> list[User]:
    """Users by creation, oldest first; a page when ``after``/``limit`` are given."""
    query = keyset_page(select(User), User.created_at, User.id, after=after, limit=limit)
    return list((await session.scalars(query)).all())


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


async def create_peer(
    session: AsyncSession,
    *,
    common_name: str,
    display_name: str,
    endpoint_url: str | None,
    actor: str,
    request_id: str,
) -> Peer:
    """Register a remote peer that will enroll with us; it starts ``pending``."""
    peer = Peer(
        common_name=common_name,
        display_name=display_name,
        endpoint_url=endpoint_url,
        state="pending",
    )
    await add_peer(session, peer, verb="peer.create", actor=actor, request_id=request_id)
    return peer


async def add_peer(
    session: AsyncSession, peer: Peer, *, verb: str, actor: str, request_id: str
) -> None:
    """Insert a peer with its audit row; a taken common name is a 409."""
    session.add(peer)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("a peer with this common name already exists") from None
    session.add(
        audit_entry(
            request_id=request_id,
            actor=actor,
            verb=verb,
            resource="federation_peer",
            outcome="allowed",
            status_code=201,
            peer_id=peer.id,
        )
    )
    await session.commit()


async def list_peers(
    session: AsyncSession,
    *,
    state: str | None = None,
    after: Position | None = None,
    limit: int | None = None,
) -> list[Peer]:
    """Peers by creation, oldest first; a page when ``after``/``limit`` are given."""
    query = keyset_page(select(Peer), Peer.created_at, Peer.id, after=after, limit=limit)
    if state is not None:
        query = query.where(Peer.state == state)
    return list((await session.scalars(query)).all())


async def get_peer(session: AsyncSession, peer_id: uuid.UUID) -> Peer:
    peer = await session.get(Peer, peer_id)
    if peer is None:
        raise NotFound("peer not found")
    return peer
