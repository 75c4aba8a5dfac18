"""The gate in front of every federated request: the inbound guard, then the audit row.

Pure ASGI, before FastAPI reads anything: a caller that is not authenticated (401) or
not authorized (403) is refused before its body is parsed, and every request, allowed
or refused, leaves one audit row (grant, verb, resource, SHA-256 of the normalized
query, outcome, status, rows and bytes out, latency), handed to the audit writer so the
answer does not wait for the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.client_cert import presentation
from api.federation_state import FederationState
from federation import inbound
from federation.db.models import utcnow
from federation.errors import FederationError

log = logging.getLogger("mosaic.api.federation")

PREFIX = "/api/federation/v1/"
# Verbs any certificate from B's CA may call (the handshake proves the key): revocation
# information must reach a peer whose grant is revoked.
OPEN_VERBS = frozenset({"certificate", "crl", "revocations"})
# Verbs that name a resource in their path, which the grant's scope must allow.
SCOPED_VERBS = frozenset({"list", "get"})


@dataclass
class AuditInfo:
    """What a request's audit row says; the gate and the routes fill it in."""

    request_id: str
    verb: str
    resource: str
    client_address: str | None
    query: dict[str, Any]
    grant_id: uuid.UUID | None = None
    peer_id: uuid.UUID | None = None
    serial: str | None = None
    reason: str | None = None
    rows_out: int | None = None

    def row(self, status: int, size: int, latency_ms: float) -> dict[str, Any]:
        normalized = json.dumps(
            {"verb": self.verb, "resource": self.resource, **self.query}, sort_keys=True
        )
        return {
            "request_id": self.request_id,
            "created_at": utcnow(),
            "actor": f"peer:{self.peer_id}" if self.peer_id else "anonymous",
            "verb": f"federation.{self.verb}",
            "resource": self.resource,
            "grant_id": self.grant_id,
            "peer_id": self.peer_id,
            "outcome": "allowed" if status < 400 else "denied",
            "status_code": status,
            "reason": (self.reason or None) and self.reason[:500],
            "cert_serial": self.serial,
            "query_sha256": hashlib.sha256(normalized.encode()).hexdigest(),
            "rows_out": self.rows_out,
            "bytes_out": size,
            "latency_ms": round(latency_ms, 3),
            "client_address": self.client_address,
            "occurrences": 1,
        }


def audit_info(scope: Scope) -> AuditInfo:
    """The request's audit record (routes add what they learn: rows out, the query)."""
    info: AuditInfo = scope["state"]["mosaic_audit"]
    return info


class FederationGate:
    def __init__(self, app: ASGIApp, state: FederationState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        verb, resource = _verb_and_resource(scope["path"])
        client = scope.get("client")
        info = AuditInfo(
            request_id=uuid.uuid4().hex,
            verb=verb,
            resource=resource,
            client_address=client[0] if client else None,
            query={},
        )
        scope.setdefault("state", {})["mosaic_audit"] = info
        status, size = 500, 0
        request_id_header = (b"x-request-id", info.request_id.encode())

        async def counting_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), request_id_header]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            refusal = await self._guard(scope, info, verb, resource)
            if refusal is None:
                await self.app(scope, receive, counting_send)
            else:
                await _problem(counting_send, refusal)
        finally:
            latency = (time.perf_counter() - started) * 1000
            await self.state.audit.record(info.row(status, size, latency))

    async def _guard(
        self, scope: Scope, info: AuditInfo, verb: str, resource: str
    ) -> FederationError | None:
        """Run the inbound guard; return the refusal to answer, or None to go on."""
        try:
            shown = presentation(scope, self.state.proxies)
            if shown is None:
                raise inbound.Unauthenticated(
                    inbound.UNAUTHENTICATED, cause="no client certificate presented"
                )
            now = utcnow()
            presented = inbound.present(
                shown.leaf_pem,
                at=now,
                roots=None if shown.verified_by_handshake else self.state.roots,
                intermediates=self.state.intermediates_for(shown.chain_pems),
            )
            info.serial = presented.serial
            if verb in OPEN_VERBS:
                scope["state"]["presented"] = presented
                return None
            async with self.state.sessions() as session:
                caller = await inbound.authorize(session, presented, at=now)
            info.grant_id, info.peer_id = caller.grant_id, caller.peer_id
            if verb in SCOPED_VERBS:
                inbound.allow(caller, resource)
            scope["state"]["caller"] = caller
        except inbound.Forbidden as refused:
            info.grant_id, info.peer_id = refused.grant_id, refused.peer_id
            info.reason = refused.cause
            return refused
        except FederationError as refused:
            info.reason = refused.cause or refused.message
            return refused
        return None


def _verb_and_resource(path: str) -> tuple[str, str]:
    if not path.startswith(PREFIX):
        return "unknown", "federation"
    parts = path[len(PREFIX) :].split("/")
    verb = parts[0][:40] or "unknown"
    resource = parts[1][:50] if verb in SCOPED_VERBS and len(parts) > 1 else "federation"
    return verb, resource


async def _problem(send: Send, error: FederationError) -> None:
    body = json.dumps({"detail": error.message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
