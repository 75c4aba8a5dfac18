"""Keyset pages over ``(created_at, id)``: stable while rows are added, no OFFSET scans.

Also the cursor codec every list shares: a cursor is opaque to clients, base64url of
the list's name and the last row's sort key (packed), so one list's cursor given to
another is refused.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from federation.errors import InvalidInput

# The sort key of the last row a caller has seen.
Position = tuple[datetime, uuid.UUID]
# A packed Position: microseconds since the epoch (8 bytes), then the UUID (16).
POSITION_SIZE = 24
NOT_A_CURSOR = "cursor: not a cursor of this list"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(kind: str, payload: bytes) -> str:
    """An opaque cursor of the list ``kind``: base64url, unpadded."""
    return base64.urlsafe_b64encode(kind.encode() + b":" + payload).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, size: int | None = None) -> bytes:
    """The payload of a cursor this list made (of ``size`` bytes); else ``InvalidInput``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    tag, _, payload = raw.partition(b":")
    if tag != kind.encode() or not payload or (size is not None and len(payload) != size):
        raise InvalidInput(NOT_A_CURSOR)
    return payload


def pack_position(position: Position) -> bytes:
    """``POSITION_SIZE`` bytes that ``unpack_position`` turns back into ``position``."""
    created_at, key = position
    micros = (created_at - _EPOCH) // _MICROSECOND
    return struct.pack(">q", micros) + key.bytes


def unpack_position(payload: bytes) -> Position:
    """The position ``pack_position`` packed; a forged one out of range is ``InvalidInput``."""
    (micros,) = struct.unpack(">q", payload[:8])
    try:
        created_at = _EPOCH + micros * _MICROSECOND
    except OverflowError:  # a forged cursor: beyond datetime's range
        raise InvalidInput(NOT_A_CURSOR) from None
    return created_at, uuid.UUID(bytes=payload[8:POSITION_SIZE])


def keyset_page(
    query: Select[Any],
    created_at: InstrumentedAttribute[datetime],
    key: InstrumentedAttribute[uuid.UUID],
    *,
    after: Position | None,
    limit: int | None,
) -> Select[Any]:
    """Order by ``(created_at, id)``, start after ``after``, stop at ``limit`` rows.

    Spelled as ``a > x OR (a = x AND id > y)`` rather than a row-value comparison so
    each side binds through its column type (UTC text on SQLite, timestamptz on PG).
    The redundant ``a >= x`` is what an index can start at: without it PostgreSQL
    reads every earlier row of an index on ``(…, created_at, id)`` and filters it out.
    """
    query = query.order_by(created_at, key)
    if after is not None:
        at, last = after
        query = query.where(
            created_at >= at, or_(created_at > at, and_(created_at == at, key > last))
        )
    if limit is not None:
        query = query.limit(limit)
    return query
