"""Activities of the PeerCertificate workflow (gateway A): read the certificate held, make
the renewal's key and CSR, ask the remote over mTLS, check and swap, mark the peer.

The clear key of a renewal never leaves these activities: the workflow carries the CSR
and the certificates (public) and the peer id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import domain_errors
from federation import peer_lifecycle
from federation.outbound import Channels, call_as_peer
from federation.remote_answers import one_line
from federation.sealing import Sealer


@dataclass(frozen=True)
class LifecyclePeer:
    peer_id: str


@dataclass(frozen=True)
class Held:
    state: str
    serial: str
    not_before: str  # ISO 8601
    not_after: str
    grant_id: str | None


@dataclass(frozen=True)
class SubmitRenewal:
    peer_id: str
    csr_pem: str
    request_id: str


@dataclass(frozen=True)
class RenewalAnswer:
    # renewed: a certificate came back; revoked: the remote revoked this peer's
    # certificate; failed: anything else (unreachable, 5xx, a refusal), worth retrying.
    outcome: str
    cert_pem: str = ""
    chain_pem: str = ""
    detail: str = ""


@dataclass(frozen=True)
class SwapInput:
    peer_id: str
    old_serial: str
    cert_pem: str
    chain_pem: str
    request_id: str


@dataclass(frozen=True)
class Swapped:
    serial: str
    not_after: str


@dataclass(frozen=True)
class MarkInput:
    peer_id: str
    serial: str
    state: str
    reason: str | None
    request_id: str


class LifecycleActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], sealer: Sealer, channels: Channels
    ) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self._channels = channels

    @activity.defn(name="lifecycle.describe")
    async def describe(self, arg: LifecyclePeer) -> Held | None:
        async with self._sessions() as session:
            held = await peer_lifecycle.held_certificate(session, uuid.UUID(arg.peer_id))
        if held is None:
            return None
        return Held(
            held.state,
            held.serial,
            held.not_before.isoformat(),
            held.not_after.isoformat(),
            held.grant_id,
        )

    @activity.defn(name="lifecycle.prepare")
    @domain_errors
    async def prepare(self, arg: LifecyclePeer) -> str:
        async with self._sessions() as session:
            return await peer_lifecycle.renewal_csr(session, self._sealer, uuid.UUID(arg.peer_id))

    @activity.defn(name="lifecycle.submit")
    @domain_errors
    async def submit(self, arg: SubmitRenewal) -> RenewalAnswer:
        """POST the CSR to the remote's /renew, over mTLS with the current certificate."""
        reply = await call_as_peer(
            self._sessions,
            self._sealer,
            self._channels,
            uuid.UUID(arg.peer_id),
            "POST",
            "renew",
            {"csrPem": arg.csr_pem},
            request_id=arg.request_id,
        )
        if reply.ok and reply.body is not None:
            cert, chain = reply.body.get("certPem"), reply.body.get("certChainPem", "")
            if isinstance(cert, str) and isinstance(chain, str):
                return RenewalAnswer("renewed", cert, chain)
            return RenewalAnswer("failed", detail="remote answer holds no certificate")
        detail = one_line(f"remote refused ({reply.reason}): {reply.detail}", 300)
        return RenewalAnswer("revoked" if reply.reason == "revoked" else "failed", detail=detail)

    @activity.defn(name="lifecycle.swap")
    @domain_errors
    async def swap(self, arg: SwapInput) -> Swapped:
        async with self._sessions() as session:
            verified = await peer_lifecycle.swap_certificate(
                session,
                self._sealer,
                uuid.UUID(arg.peer_id),
                old_serial=arg.old_serial,
                cert_pem=arg.cert_pem,
                chain_pem=arg.chain_pem,
                request_id=arg.request_id,
            )
        # No pool is torn down here: the next call finds the new serial and gets a new
        # pool; calls already on the old one finish there (B's overlap window).
        return Swapped(verified.serial, verified.not_after.isoformat())

    @activity.defn(name="lifecycle.mark")
    async def mark(self, arg: MarkInput) -> bool:
        async with self._sessions() as session:
            return await peer_lifecycle.mark(
                session,
                uuid.UUID(arg.peer_id),
                serial=arg.serial,
                state=arg.state,
                reason=arg.reason,
                request_id=arg.request_id,
            )

    def all(self) -> list[Callable[..., Any]]:
        return [self.describe, self.prepare, self.submit, self.swap, self.mark]
