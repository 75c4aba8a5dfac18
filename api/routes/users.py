from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AdminDep, SessionDep
from api.paging import CreatedPage, CursorQuery, LimitQuery, paged_responses
from api.schemas import UserCreate, UserOut, problem_responses
from federation import directory

router = APIRouter(prefix="/api/admin/users", tags=["users"])


@router.post(
    "",
    status_code=201,
    response_model=UserOut,
    responses=problem_responses(400, 401, 403, 409, 413, 422),
)
async def create_user(body: UserCreate, session: SessionDep, _: AdminDep) -> UserOut:
    user = await directory.create_user(session, name=body.name, email=body.email)
    return UserOut.of(user)


@router.get("", response_model=list[UserOut], responses=paged_responses(401, 403, 422))
async def list_users(
    session: SessionDep,
    _: AdminDep,
    response: Response,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> list[UserOut]:
    """Users, oldest first; with ``limit``, one page and ``X-Next-Cursor`` if more follow."""
    page = CreatedPage("users", limit, cursor)
    rows = await directory.list_users(session, after=page.after, limit=page.fetch)
    return [UserOut.of(u) for u in page.trim(rows, response)]
