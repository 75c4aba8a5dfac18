"""Paged admin lists: ``?limit=&cursor=`` in, the next cursor out in ``X-Next-Cursor``.

The body stays a plain JSON list, so clients written before paging keep working;
the cursor is a response header because it describes the list, not any row. A
cursor is opaque to clients: base64url of the list's name and the last row's
sort key (packed), so one list's cursor given to another is a clean 422.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Query, Response

from api.schemas import problem_responses
from federation.paging import POSITION_SIZE, Position, pack_position, unpack_position
from federation.paging import decode_cursor as decode_cursor
from federation.paging import encode_cursor as encode_cursor

NEXT_CURSOR = "X-Next-Cursor"
MAX_LIMIT = 1000

LimitQuery = Annotated[
    int | None,
    Query(ge=1, le=MAX_LIMIT, description="at most this many rows; the rest via the cursor"),
]
CursorQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=2048,
        description=f"continue after the page that answered with this `{NEXT_CURSOR}`",
    ),
]

Row = TypeVar("Row")


def paged_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a paged list: the error bodies and the cursor header."""
    header = {
        NEXT_CURSOR: {
            "description": "present when more rows follow: pass it as `cursor`",
            "schema": {"type": "string"},
        }
    }
    return {200: {"headers": header}, **problem_responses(*statuses)}


def id_position(kind: str, cursor: str | None) -> int | None:
    """The integer id a cursor points past (lists ordered by id)."""
    if cursor is None:
        return None
    (key,) = struct.unpack(">q", decode_cursor(kind, cursor, 8))
    return int(key)


def one_page(
    rows: Sequence[Row],
    limit: int | None,
    response: Response,
    cursor_of: Callable[[Row], str],
) -> Sequence[Row]:
    """Trim a ``limit + 1`` fetch to ``limit`` rows; set the next cursor if one was cut."""
    if limit is None or len(rows) <= limit:
        return rows
    page = rows[:limit]
    response.headers[NEXT_CURSOR] = cursor_of(page[-1])
    return page


def id_cursor(kind: str) -> Callable[[Any], str]:
    """The cursor after a row with an integer ``id``."""

    def cursor_of(row: Any) -> str:
        return encode_cursor(kind, struct.pack(">q", row.id))

    return cursor_of


@dataclass(frozen=True)
class CreatedPage:
    """One page of a list ordered by ``(created_at, id)``, as the query asked for it.

    ``after`` and ``fetch`` go to the core's list function; ``trim`` cuts what it
    returned to ``limit`` rows and sets the next cursor when more followed.
    """

    kind: str
    limit: int | None
    cursor: str | None

    @property
    def after(self) -> Position | None:
        """The ``(created_at, id)`` the cursor points after; a 422 for a foreign one."""
        if self.cursor is None:
            return None
        return unpack_position(decode_cursor(self.kind, self.cursor, POSITION_SIZE))

    @property
    def fetch(self) -> int | None:
        """One row more than asked, to know whether another page follows."""
        return None if self.limit is None else self.limit + 1

    def trim(self, rows: Sequence[Row], response: Response) -> Sequence[Row]:
        """The page's rows; ``X-Next-Cursor`` on ``response`` when more followed."""
        return one_page(rows, self.limit, response, self._cursor_of)

    def _cursor_of(self, row: Any) -> str:
        return encode_cursor(self.kind, pack_position((row.created_at, row.id)))
