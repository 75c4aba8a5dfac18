from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import AdminDep, SessionDep
from api.schemas import AuditOut, problem_responses
from federation.db.models import AuditEntry

router = APIRouter(prefix="/api/admin/federation/audit", tags=["audit"])


@router.get("", response_model=list[AuditOut], responses=problem_responses(401, 403, 422))
async def list_audit(
    session: SessionDep,
    _: AdminDep,
    grant: uuid.UUID | None = None,
    peer: uuid.UUID | None = None,
    outcome: Literal["allowed", "denied"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditOut]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if grant is not None:
        query = query.where(AuditEntry.grant_id == grant)
    if peer is not None:
        query = query.where(AuditEntry.peer_id == peer)
    if outcome is not None:
        query = query.where(AuditEntry.outcome == outcome)
    return [AuditOut.model_validate(a) for a in (await session.scalars(query)).all()]
