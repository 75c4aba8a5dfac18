"""Admin access to the data this gateway serves over federation (tasks, notes, credentials)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import AdminDep, RequestIdDep, SessionDep
from api.paging import NEXT_CURSOR, CursorQuery, LimitQuery, paged_responses
from api.schemas import ResourceCreate, ResourceOut, problem_responses
from federation.resources import SqlResources, require_served

router = APIRouter(prefix="/api/admin/resources", tags=["resources"])

SOURCE = SqlResources()
# Without ``limit`` a page of this many rows: these tables grow without bound.
DEFAULT_LIMIT = 100


async def _served(kind: str) -> str:
    return require_served(kind)


# A dependency, so an unknown kind is a 404 before the body is validated (not a 422).
KindDep = Annotated[str, Depends(_served)]


@router.post(
    "/{kind}",
    status_code=201,
    response_model=ResourceOut,
    responses=problem_responses(400, 401, 403, 404, 413, 422),
)
async def create_resource(
    actor: AdminDep,
    kind: KindDep,
    body: ResourceCreate,
    session: SessionDep,
    request_id: RequestIdDep,
) -> ResourceOut:
    """Add a row owned by an existing user (404 if there is none)."""
    item = await SOURCE.create(
        session,
        kind,
        owner=body.owner_user_id,
        title=body.title,
        body=body.body,
        team_id=body.team_id,
        actor=actor,
        request_id=request_id,
    )
    return ResourceOut.of(item)


@router.get(
    "/{kind}", response_model=list[ResourceOut], responses=paged_responses(401, 403, 404, 422)
)
async def list_resources(
    _: AdminDep,
    kind: KindDep,
    session: SessionDep,
    response: Response,
    owner: Annotated[uuid.UUID | None, Query(description="only this user's rows")] = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> list[ResourceOut]:
    """One owner's rows oldest first; without ``owner``, everyone's, grouped by owner.

    A page of ``limit`` rows (100 without it), ``X-Next-Cursor`` when more follow.
    """
    page = await SOURCE.admin_page(
        session, kind, owner=owner, limit=limit or DEFAULT_LIMIT, cursor=cursor
    )
    if page.next_cursor is not None:
        response.headers[NEXT_CURSOR] = page.next_cursor
    return [ResourceOut.of(item) for item in page.items]
