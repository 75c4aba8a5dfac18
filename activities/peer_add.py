"""Activities of the peer-add workflow (the requesting gateway enrolling with a remote).

The enrollment URL holds the token: it is read sealed from the database here and
never passed through workflow history. Only public things leave these
activities: what the preflight said, the CSR, the certificate, the remote's CA
root. Every error that leaves them carries a one-line message of ours: a remote's
or a library's text never reaches history, the peer row or the audit log.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import domain_errors
from federation import requesting_peer
from federation.client_key import client_public_key
from federation.errors import FederationError
from federation.pki.certs import VerifiedCertificate
from federation.remote_gateway import RemoteGateway, RemoteUnavailable, remote_client
from federation.remote_trust import check_pin, pinned_root, verify_received_certificate
from federation.remote_url import AddressPolicy, RemoteTarget, parse_enrollment_url
from federation.sealing import Sealer

log = logging.getLogger("mosaic.activities.peer_add")
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class PeerRef:
    peer_id: str


@dataclass(frozen=True)
class PreflightInput:
    peer_id: str
    # The admin's pin (64 lowercase hex); the preflight's fingerprint must equal it.
    ca_fingerprint: str | None = None


@dataclass(frozen=True)
class Preflight:
    remote_host: str
    common_name: str
    grant_id: str
    subject_user_id: str
    expires_at: str
    ca_fingerprint: str = ""
    federation_url: str | None = None


@dataclass(frozen=True)
class SubmitInput:
    peer_id: str
    csr_pem: str


@dataclass(frozen=True)
class Received:
    cert_pem: str
    chain_pem: str
    ca_cert_pem: str = ""
    federation_url: str | None = None


@dataclass(frozen=True)
class VerifyReceivedInput:
    peer_id: str
    cert_pem: str
    chain_pem: str
    grant_id: str
    subject_user_id: str
    ca_cert_pem: str = ""
    ca_fingerprint: str = ""


@dataclass(frozen=True)
class Checked:
    serial: str
    not_after: str
    not_before: str
    fingerprint: str
    grant_id: str
    subject_user_id: str
    common_name: str


@dataclass(frozen=True)
class StoreInput:
    request_id: str
    peer_id: str
    cert_pem: str
    checked: Checked
    ca_cert_pem: str = ""
    ca_fingerprint: str = ""
    federation_url: str | None = None
    # The intermediates our certificate chains through (presented with it over mTLS).
    chain_pem: str = ""


@dataclass(frozen=True)
class FailInput:
    request_id: str
    peer_id: str
    reason: str
    status_code: int


@dataclass(frozen=True)
class RemoteSettings:
    allow_http_loopback: bool = False
    ca_bundle: str = ""
    allowed_networks: str = ""
    max_bytes: int = 65536


def _own_messages(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A transient remote failure keeps the remote's Retry-After; an unforeseen
    exception (a dropped connection, a bug) stays retryable but leaves with its type
    only, because its text may hold SQL or remote bytes. Domain errors pass on to
    ``domain_errors``."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except RemoteUnavailable as exc:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
            raise ApplicationError(exc.message, type=exc.kind, next_retry_delay=delay) from None
        except (FederationError, ApplicationError):
            raise
        except Exception as exc:
            log.warning("%s: %s: %s", fn.__name__, type(exc).__name__, exc)
            raise ApplicationError(
                f"{fn.__name__} could not finish ({type(exc).__name__})", type="Unavailable"
            ) from None

    return wrapper


class PeerAddActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sealer: Sealer,
        remote: RemoteSettings,
    ) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self._remote = remote
        # Parsed here so a bad MOSAIC_ENROLL_ALLOWED_NETWORKS stops the worker at start.
        self._policy = AddressPolicy.of(
            allow_http_loopback=remote.allow_http_loopback,
            allowed_networks=remote.allowed_networks,
        )

    async def _target(self, peer_id: str) -> RemoteTarget:
        async with self._sessions() as session:
            url = await requesting_peer.read_enrollment_url(
                session, self._sealer, uuid.UUID(peer_id)
            )
        return parse_enrollment_url(url, self._policy)

    @activity.defn(name="peer_add.preflight")
    @domain_errors
    @_own_messages
    async def preflight(self, arg: PreflightInput) -> Preflight:
        target = await self._target(arg.peer_id)
        async with remote_client(self._remote.ca_bundle) as client:
            remote = RemoteGateway(client, self._policy, self._remote.max_bytes)
            found = await remote.preflight(target)
        check_pin(arg.ca_fingerprint, found.ca_fingerprint)
        async with self._sessions() as session:
            await requesting_peer.record_preflight(
                session,
                uuid.UUID(arg.peer_id),
                common_name=found.common_name,
                grant_id=found.grant_id,
                subject_user_id=found.subject_user_id,
            )
        return Preflight(
            remote_host=target.host,
            common_name=found.common_name,
            grant_id=found.grant_id,
            subject_user_id=found.subject_user_id,
            expires_at=found.expires_at,
            ca_fingerprint=found.ca_fingerprint,
            federation_url=found.federation_url,
        )

    @activity.defn(name="peer_add.make_csr")
    @domain_errors
    @_own_messages
    async def make_csr(self, arg: PeerRef) -> str:
        async with self._sessions() as session:
            return await requesting_peer.ensure_client_csr(
                session, self._sealer, uuid.UUID(arg.peer_id)
            )

    @activity.defn(name="peer_add.submit")
    @domain_errors
    @_own_messages
    async def submit(self, arg: SubmitInput) -> Received:
        target = await self._target(arg.peer_id)
        async with remote_client(self._remote.ca_bundle) as client:
            remote = RemoteGateway(client, self._policy, self._remote.max_bytes)
            answer = await remote.redeem(target, arg.csr_pem)
        return Received(
            answer.cert_pem, answer.chain_pem, answer.ca_cert_pem, answer.federation_url
        )

    @activity.defn(name="peer_add.verify")
    @domain_errors
    @_own_messages
    async def verify(self, arg: VerifyReceivedInput) -> Checked:
        async with self._sessions() as session:
            peer = await requesting_peer.get_peer(session, uuid.UUID(arg.peer_id))
        root = pinned_root(arg.ca_cert_pem, arg.ca_fingerprint)
        verified = verify_received_certificate(
            arg.cert_pem,
            arg.chain_pem,
            public_key=client_public_key(self._sealer, peer),
            grant_id=arg.grant_id,
            subject_user_id=arg.subject_user_id,
            roots=[root],
        )
        return Checked(
            verified.serial,
            verified.not_after.isoformat(),
            verified.not_before.isoformat(),
            verified.fingerprint_sha256,
            verified.grant_id,
            verified.subject_user_id,
            verified.common_name,
        )

    @activity.defn(name="peer_add.store")
    @domain_errors
    @_own_messages
    async def store(self, arg: StoreInput) -> None:
        c = arg.checked
        verified = VerifiedCertificate(
            serial=c.serial,
            not_after=datetime.fromisoformat(c.not_after),
            not_before=datetime.fromisoformat(c.not_before),
            fingerprint_sha256=c.fingerprint,
            grant_id=c.grant_id,
            subject_user_id=c.subject_user_id,
            common_name=c.common_name,
        )
        async with self._sessions() as session:
            await requesting_peer.store_certificate(
                session,
                uuid.UUID(arg.peer_id),
                cert_pem=arg.cert_pem,
                verified=verified,
                actor="peer-add",
                request_id=arg.request_id,
                remote=requesting_peer.RemoteIdentity(
                    arg.ca_cert_pem, arg.ca_fingerprint, arg.federation_url
                ),
                chain_pem=arg.chain_pem,
            )
        log.info("peer %s active with certificate %s", arg.peer_id, c.serial)

    @activity.defn(name="peer_add.mark_failed")
    async def mark_failed(self, arg: FailInput) -> None:
        async with self._sessions() as session:
            await requesting_peer.mark_failed(
                session,
                uuid.UUID(arg.peer_id),
                reason=arg.reason,
                status_code=arg.status_code,
                request_id=arg.request_id,
            )
        log.info("peer %s failed: %s", arg.peer_id, arg.reason)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.preflight,
            self.make_csr,
            self.submit,
            self.verify,
            self.store,
            self.mark_failed,
        ]
