"""Activities of the RevokeGrant workflow (the CA call is ``certificates.revoke_at_ca``)."""

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
    pending_serials: list[str]
    newly_revoked: bool
    peers_revoked: list[str]


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
        return GrantRevoked(
            str(done.grant_id),
            str(done.peer_id),
            done.pending_serials,
            done.newly_revoked,
            [str(p) for p in done.peers_revoked],
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.mark_grant]
