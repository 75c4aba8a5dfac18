"""Activities of the RevokeGrant workflow (the CA call reuses ``redeem.revoke_certificate``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import domain_errors
from federation import revocation


@dataclass(frozen=True)
class MarkGrantInput:
    request_id: str
    grant_id: str
    reason: str | None
    actor: str


@dataclass(frozen=True)
class GrantRevoked:
    grant_id: str
    peer_id: str
    cert_serial: str | None


@dataclass(frozen=True)
class MarkPeerInput:
    request_id: str
    peer_id: str
    cert_serial: str


class RevokeActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="revoke.mark_grant")
    @domain_errors
    async def mark_grant(self, arg: MarkGrantInput) -> GrantRevoked:
        async with self._sessions() as session:
            done = await revocation.revoke_grant_record(
                session,
                uuid.UUID(arg.grant_id),
                reason=arg.reason,
                actor=arg.actor,
                request_id=arg.request_id,
            )
        return GrantRevoked(str(done.grant_id), str(done.peer_id), done.cert_serial)

    @activity.defn(name="revoke.mark_peer")
    @domain_errors
    async def mark_peer(self, arg: MarkPeerInput) -> bool:
        async with self._sessions() as session:
            return await revocation.mark_peer_revoked(
                session,
                uuid.UUID(arg.peer_id),
                cert_serial=arg.cert_serial,
                request_id=arg.request_id,
            )

    def all(self) -> list[Callable[..., Any]]:
        return [self.mark_grant, self.mark_peer]
