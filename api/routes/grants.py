from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query

from api.deps import AdminDep, GatewayDep, RequestIdDep, SessionDep
from api.schemas import GrantCreate, GrantOut, GrantRevoke, GrantStatus, TokenCreate, TokenOut
from federation import grants

router = APIRouter(prefix="/api/admin/federation/grants", tags=["grants"])


@router.post("", status_code=201, response_model=GrantOut)
async def create_grant(
    body: GrantCreate, session: SessionDep, actor: AdminDep, request_id: RequestIdDep
) -> GrantOut:
    grant = await grants.create_grant(
        session,
        subject_user_id=body.subject_user_id,
        peer_id=body.peer_id,
        scope=body.scope,
        actor=actor,
        request_id=request_id,
    )
    return GrantOut.of(grant)


@router.get("", response_model=list[GrantOut])
async def list_grants(
    session: SessionDep,
    _: AdminDep,
    peer: Annotated[uuid.UUID | None, Query(description="only grants of this peer")] = None,
    status: Annotated[GrantStatus | None, Query()] = None,
) -> list[GrantOut]:
    return [GrantOut.of(g) for g in await grants.list_grants(session, peer_id=peer, status=status)]


@router.get("/{grant_id}", response_model=GrantOut)
async def get_grant(grant_id: uuid.UUID, session: SessionDep, _: AdminDep) -> GrantOut:
    return GrantOut.of(await grants.get_grant(session, grant_id))


@router.patch("/{grant_id}/revoke", response_model=GrantOut)
async def revoke_grant(
    grant_id: uuid.UUID,
    session: SessionDep,
    actor: AdminDep,
    request_id: RequestIdDep,
    body: Annotated[GrantRevoke | None, Body()] = None,
) -> GrantOut:
    """Revoke a grant; revoked grants never reactivate. The reason is audited."""
    reason = body.reason if body else None
    grant = await grants.mark_grant_revoked(
        session, grant_id, reason=reason, actor=actor, request_id=request_id
    )
    return GrantOut.of(grant)


@router.post("/{grant_id}/tokens", status_code=201, response_model=TokenOut)
async def create_token(
    grant_id: uuid.UUID,
    session: SessionDep,
    gateway: GatewayDep,
    actor: AdminDep,
    request_id: RequestIdDep,
    body: Annotated[TokenCreate | None, Body()] = None,
) -> TokenOut:
    """Mint a single-use enrollment token; it is shown once and stored only as a hash."""
    issued = await grants.create_token(
        session,
        grant_id,
        ttl_seconds=(body or TokenCreate()).ttl_seconds,
        public_url=gateway.settings.mosaic_public_url,
        actor=actor,
        request_id=request_id,
    )
    return TokenOut(
        token=issued.token, expires_at=issued.expires_at, enrollment_url=issued.enrollment_url
    )
