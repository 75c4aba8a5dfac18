"""Append-only audit trail; every allowed or denied federation action writes one row."""

from __future__ import annotations

import uuid
from typing import Literal

from federation.db.models import AuditEntry

Outcome = Literal["allowed", "denied"]


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
    )
