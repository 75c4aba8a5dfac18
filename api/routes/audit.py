from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from api.deps import AdminDep, SessionDep
from api.paging import MAX_LIMIT, CursorQuery, id_cursor, id_position, one_page, paged_responses
from api.schemas import AuditOut
from federation.db.models import AuditEntry

router = APIRouter(prefix="/api/admin/federation/audit", tags=["audit"])


@router.get("", response_model=list[AuditOut], responses=paged_responses(401, 403, 422))
async def list_audit(
    session: SessionDep,
    _: AdminDep,
    response: Response,
    grant: uuid.UUID | None = None,
    peer: uuid.UUID | None = None,
    outcome: Literal["allowed", "denied"] | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 200,
    cursor: CursorQuery = None,
) -> list[AuditOut]:
    """The audit log, newest first (by id); ``X-Next-Cursor`` when older rows follow."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    before = id_position("audit", cursor)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if grant is not None:
        query = query.where(AuditEntry.grant_id == grant)
    if peer is not None:
        query = query.where(AuditEntry.peer_id == peer)
    if outcome is not None:
        query = query.where(AuditEntry.outcome == outcome)
    rows = one_page((await session.scalars(query)).all(), limit, response, id_cursor("audit"))
    return [AuditOut.model_validate(a) for a in rows]
