from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import AdminDep, RequestIdDep, SessionDep
from api.schemas import PeerCreate, PeerOut, PeerState
from federation import directory

router = APIRouter(prefix="/api/admin/federation/peers", tags=["peers"])


@router.post("", status_code=201, response_model=PeerOut)
async def create_peer(
    body: PeerCreate, session: SessionDep, actor: AdminDep, request_id: RequestIdDep
) -> PeerOut:
    """Register a remote peer that will enroll with this gateway (starts ``pending``)."""
    peer = await directory.create_peer(
        session,
        common_name=body.common_name,
        display_name=body.display_name,
        endpoint_url=body.endpoint_url,
        actor=actor,
        request_id=request_id,
    )
    return PeerOut.of(peer)


@router.get("", response_model=list[PeerOut])
async def list_peers(
    session: SessionDep, _: AdminDep, state: PeerState | None = None
) -> list[PeerOut]:
    return [PeerOut.of(p) for p in await directory.list_peers(session, state=state)]


@router.get("/{peer_id}", response_model=PeerOut)
async def get_peer(peer_id: uuid.UUID, session: SessionDep, _: AdminDep) -> PeerOut:
    return PeerOut.of(await directory.get_peer(session, peer_id))
