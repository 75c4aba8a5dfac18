"""The data a gateway serves over federation: one small interface, one SQL source.

A federated request names a kind (``tasks``) and acts for one user (the grant's
subject); a ``ResourceSource`` answers with that user's rows only, a page at a
time. ``SqlResources`` serves the built-in tables; admins also create rows and
list anyone's through it.

Cursors are opaque: base64url of the kind, the owner and the last row's
``(created_at, id)``. They are not signed and need not be: the owner filter is
applied on every query, so a forged cursor can only move within the caller's own
rows; one of another kind or owner is refused rather than silently reinterpreted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.db.models import Credential, Note, Task, User, utcnow, wire_time
from federation.errors import InvalidInput, NotFound
from federation.paging import (
    NOT_A_CURSOR,
    POSITION_SIZE,
    decode_cursor,
    encode_cursor,
    keyset_page,
    pack_position,
    unpack_position,
)

_Row = Task | Note | Credential
# Keys are scope resource names (federation.scope.RESOURCES).
_MODELS: dict[str, type[_Row]] = {"tasks": Task, "notes": Note, "credentials": Credential}
SERVED: frozenset[str] = frozenset(_MODELS)

TITLE_MAX_CHARS = 200
BODY_MAX_BYTES = 64 * 1024
# The scope's max_rows_per_query allows up to this many rows in one answer.
MAX_PAGE_ROWS = 10_000
_UUID_SIZE = 16


@dataclass(frozen=True)
class ResourceItem:
    """One row of a served kind, detached from the database session."""

    id: uuid.UUID
    owner_user_id: uuid.UUID
    team_id: uuid.UUID | None
    title: str
    body: str
    created_at: datetime
    updated_at: datetime

    def wire(self) -> dict[str, Any]:
        """The item as JSON-ready camelCase, times in ISO 8601 UTC ("Z")."""
        return {
            "id": str(self.id),
            "ownerUserId": str(self.owner_user_id),
            "teamId": None if self.team_id is None else str(self.team_id),
            "title": self.title,
            "body": self.body,
            "createdAt": wire_time(self.created_at),
            "updatedAt": wire_time(self.updated_at),
        }


@dataclass(frozen=True)
class ResourcePage:
    """Rows in ``(created_at, id)`` order; ``next_cursor`` is None on the last page."""

    items: list[ResourceItem]
    next_cursor: str | None


class ResourceSource(Protocol):
    """What the federation listener reads from: one user's rows of a kind."""

    def serves(self, kind: str) -> bool:
        """Whether this source answers for ``kind`` (a scope resource name)."""
        ...

    async def page(
        self,
        session: AsyncSession,
        kind: str,
        *,
        owner: uuid.UUID,
        limit: int,
        cursor: str | None,
    ) -> ResourcePage:
        """``owner``'s rows, oldest first, at most ``limit``, after ``cursor``."""
        ...

    async def get(
        self, session: AsyncSession, kind: str, *, owner: uuid.UUID, item_id: uuid.UUID
    ) -> ResourceItem | None:
        """``owner``'s row ``item_id``; None when missing or someone else's."""
        ...


def _item(row: _Row) -> ResourceItem:
    return ResourceItem(
        id=row.id,
        owner_user_id=row.owner_user_id,
        team_id=row.team_id,
        title=row.title,
        body=row.body,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def require_served(kind: str) -> str:
    """``kind`` if the built-in source serves it; else ``NotFound``."""
    if kind not in SERVED:
        # The kind comes from a URL: answered with what is served, not echoed back.
        raise NotFound(f"unknown resource kind; served: {', '.join(sorted(SERVED))}")
    return kind


def _model(kind: str) -> type[_Row]:
    return _MODELS[require_served(kind)]


# Every position is (owner, created_at, id): the order of the ix_<kind>_owner_keyset index.
_Position = tuple[uuid.UUID, datetime, uuid.UUID]


def _cursor(kind: str, item: ResourceItem) -> str:
    return encode_cursor(kind, item.owner_user_id.bytes + pack_position((item.created_at, item.id)))


def _position(kind: str, cursor: str) -> _Position:
    payload = decode_cursor(kind, cursor, _UUID_SIZE + POSITION_SIZE)
    created_at, key = unpack_position(payload[_UUID_SIZE:])
    return uuid.UUID(bytes=payload[:_UUID_SIZE]), created_at, key


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_ROWS:
        raise InvalidInput(f"limit: must be 1..{MAX_PAGE_ROWS}")


def _check_text(title: str, body: str) -> None:
    # What PostgreSQL text cannot hold (NUL, a lone surrogate) is refused here, not a 500
    # at insert.
    for name, value in (("title", title), ("body", body)):
        if "\x00" in value:
            raise InvalidInput(f"{name}: must not contain NUL characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidInput(f"{name}: must be valid Unicode (no lone surrogates)") from None
    if not title.strip() or len(title) > TITLE_MAX_CHARS:
        raise InvalidInput(f"title: must be 1..{TITLE_MAX_CHARS} characters, not all blank")
    if len(body.encode()) > BODY_MAX_BYTES:
        raise InvalidInput(f"body: must be at most {BODY_MAX_BYTES} bytes (UTF-8)")


class SqlResources:
    """The built-in source: the ``tasks``, ``notes`` and ``credentials`` tables."""

    def serves(self, kind: str) -> bool:
        return kind in SERVED

    async def page(
        self,
        session: AsyncSession,
        kind: str,
        *,
        owner: uuid.UUID,
        limit: int,
        cursor: str | None,
    ) -> ResourcePage:
        model = _model(kind)
        _check_limit(limit)
        after = None
        if cursor is not None:
            cursor_owner, created_at, key = _position(kind, cursor)
            if cursor_owner != owner:
                raise InvalidInput(NOT_A_CURSOR)
            after = created_at, key
        query = select(model).where(model.owner_user_id == owner)
        rows = await _fetch(
            session, keyset_page(query, model.created_at, model.id, after=after, limit=limit + 1)
        )
        return _trim(kind, rows, limit)

    async def get(
        self, session: AsyncSession, kind: str, *, owner: uuid.UUID, item_id: uuid.UUID
    ) -> ResourceItem | None:
        model = _model(kind)
        query = select(model).where(model.id == item_id, model.owner_user_id == owner)
        found = await _fetch(session, query)
        return found[0] if found else None

    async def create(
        self,
        session: AsyncSession,
        kind: str,
        *,
        owner: uuid.UUID,
        title: str,
        body: str,
        team_id: uuid.UUID | None,
        actor: str,
        request_id: str,
    ) -> ResourceItem:
        """Add a row for ``owner`` (who must exist) and its audit row, in one commit."""
        model = _model(kind)
        _check_text(title, body)
        if await session.get(User, owner) is None:
            raise NotFound("owner user not found")
        now = utcnow()
        row = model(
            owner_user_id=owner,
            team_id=team_id,
            title=title,
            body=body,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        item = _item(row)
        session.add(
            audit_entry(
                request_id=request_id,
                actor=actor,
                verb="resource.create",
                resource=kind,
                outcome="allowed",
                status_code=201,
            )
        )
        await session.commit()
        return item

    async def admin_page(
        self,
        session: AsyncSession,
        kind: str,
        *,
        owner: uuid.UUID | None,
        limit: int,
        cursor: str | None,
    ) -> ResourcePage:
        """One owner's rows like ``page``; without an owner, everyone's, grouped by owner.

        Grouped by owner because that is the order of the only index that covers the
        list: ``(owner_user_id, created_at, id)``. A page may span owners: the rest of
        the cursor's owner, then the owners after it, each range read off the index.
        """
        if owner is not None:
            return await self.page(session, kind, owner=owner, limit=limit, cursor=cursor)
        model = _model(kind)
        _check_limit(limit)
        fetch = limit + 1
        by_owner = select(model).order_by(model.owner_user_id)
        if cursor is None:
            rows = await _fetch(
                session, keyset_page(by_owner, model.created_at, model.id, after=None, limit=fetch)
            )
            return _trim(kind, rows, limit)
        at_owner, created_at, key = _position(kind, cursor)
        rows = await _fetch(
            session,
            keyset_page(
                select(model).where(model.owner_user_id == at_owner),
                model.created_at,
                model.id,
                after=(created_at, key),
                limit=fetch,
            ),
        )
        if len(rows) < fetch:
            later = by_owner.where(model.owner_user_id > at_owner)
            rows += await _fetch(
                session,
                keyset_page(later, model.created_at, model.id, after=None, limit=fetch - len(rows)),
            )
        return _trim(kind, rows, limit)


async def _fetch(session: AsyncSession, query: Select[Any]) -> list[ResourceItem]:
    return [_item(row) for row in (await session.scalars(query)).all()]


def _trim(kind: str, items: list[ResourceItem], limit: int) -> ResourcePage:
    if len(items) <= limit:
        return ResourcePage(items, None)
    page = items[:limit]
    return ResourcePage(page, _cursor(kind, page[-1]))


# mypy holds the built-in source to the protocol the federation listener reads through.
_CONFORMS: type[ResourceSource] = SqlResources
