"""Append-only audit trail; every allowed or denied federation action writes one row.

One exception to one-row-per-request: a denial that names nothing known (an unknown or
malformed enrollment token) is counted, one row per client address, verb and minute,
so anonymous traffic grows the table with addresses and minutes, not with requests.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import Executable

from federation.db.models import AuditEntry, utcnow

Outcome = Literal["allowed", "denied"]

ANONYMOUS = "anonymous"
# Column widths (federation_audit_log): client_address 64, idempotency_key 100.
_ADDRESS_CHARS = 64
_ADDRESS_CHARS_IN_KEY = 60


def audit_entry(
    *,
    request_id: str,
    actor: str,
    verb: str,
    resource: str,
    outcome: Outcome,
    status_code: int,
    reason: str | None = None,
    grant_id: uuid.UUID | None = None,
    peer_id: uuid.UUID | None = None,
    cert_serial: str | None = None,
    idempotency_key: str | None = None,
    client_address: str | None = None,
) -> AuditEntry:
    return AuditEntry(
        request_id=request_id,
        actor=actor,
        verb=verb,
        resource=resource,
        outcome=outcome,
        status_code=status_code,
        reason=(reason or None) and reason[:500],
        grant_id=grant_id,
        peer_id=peer_id,
        cert_serial=cert_serial,
        idempotency_key=idempotency_key,
        client_address=client_address and client_address[:_ADDRESS_CHARS],
    )


def row_values(entry: AuditEntry) -> dict[str, Any]:
    """The columns set on an audit row not yet added to a session, for a Core insert on
    the table (the column defaults fill the rest)."""
    return {
        column.key: entry.__dict__[column.key]
        for column in AuditEntry.__table__.columns
        if column.key in entry.__dict__
    }


def anonymous_denial_key(verb: str, client_address: str, at: datetime) -> str:
    """The row an anonymous denial is counted in: ``anon:<verb>:<address>:<minute>``."""
    minute = int(at.timestamp()) // 60
    return f"anon:{verb[:20]}:{client_address[:_ADDRESS_CHARS_IN_KEY]}:{minute}"


async def count_anonymous_denial(
    session: AsyncSession,
    *,
    request_id: str,
    verb: str,
    resource: str,
    status_code: int,
    reason: str,
    client_address: str,
    at: datetime | None = None,
) -> None:
    """Count one denial that names nothing known, and commit.

    The first of a minute inserts the row (its request id, reason and time); the others
    of that client address, verb and minute add one to its ``occurrences``, atomically
    (INSERT … ON CONFLICT DO UPDATE on PostgreSQL and SQLite alike).
    """
    at = at or utcnow()
    row = {
        "request_id": request_id,
        "created_at": at,
        "actor": ANONYMOUS,
        "verb": verb,
        "resource": resource,
        "outcome": "denied",
        "status_code": status_code,
        "reason": reason[:500],
        "client_address": client_address[:_ADDRESS_CHARS],
        "idempotency_key": anonymous_denial_key(verb, client_address, at),
        "occurrences": 1,
    }
    key = [AuditEntry.idempotency_key]
    counted = {"occurrences": AuditEntry.occurrences + 1}
    statement: Executable
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(AuditEntry).values(**row)
        statement = pg.on_conflict_do_update(index_elements=key, set_=counted)
    else:
        lite = sqlite.insert(AuditEntry).values(**row)
        statement = lite.on_conflict_do_update(index_elements=key, set_=counted)
    await session.execute(statement)
    await session.commit()
