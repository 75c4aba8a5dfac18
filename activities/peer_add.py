"""Activities of the peer-add workflow (the requesting gateway enrolling with a remote).

The enrollment URL holds the token: it is read sealed from the database here
and never passed through workflow history. Only the CSR and the certificate,
both public, leave these activities.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import domain_errors
from federation import requester
from federation.logredact import redact_tokens
from federation.pki.certs import VerifiedCertificate
from federation.sealing import Sealer

log = logging.getLogger("mosaic.activities.peer_add")


@dataclass(frozen=True)
class PeerRef:
    peer_id: str


@dataclass(frozen=True)
class Preflight:
    remote_host: str
    common_name: str
    grant_id: str
    subject_user_id: str
    expires_at: str


@dataclass(frozen=True)
class SubmitInput:
    peer_id: str
    csr_pem: str


@dataclass(frozen=True)
class Received:
    cert_pem: str
    chain_pem: str


@dataclass(frozen=True)
class VerifyReceivedInput:
    peer_id: str
    cert_pem: str
    chain_pem: str
    grant_id: str
    subject_user_id: str


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


def remote_client(settings: RemoteSettings) -> httpx.AsyncClient:
    """TLS verified (against a pinned bundle when given), no redirects, bounded time."""
    verify: ssl.SSLContext | bool = True
    if settings.ca_bundle:
        verify = ssl.create_default_context(cafile=settings.ca_bundle)
    return httpx.AsyncClient(
        verify=verify, follow_redirects=False, timeout=httpx.Timeout(40, connect=5)
    )


def _remote_reason(response: httpx.Response) -> str:
    try:
        detail = str(response.json().get("detail", ""))
    except ValueError:
        detail = ""
    detail = redact_tokens(" ".join(detail.split()))[:200] or response.reason_phrase
    return f"remote answered {response.status_code}: {detail}"


def _raise_for_remote(response: httpx.Response) -> None:
    """2xx passes; 503/5xx/429 are retried (honouring Retry-After); other answers are final."""
    status = response.status_code
    if status < 300:
        return
    reason = _remote_reason(response)
    if status in (429, 503) or (status >= 500 and status != 502):
        delay = _retry_after(response)
        raise ApplicationError(
            reason, type="RemoteUnavailable", next_retry_delay=delay, non_retryable=False
        )
    raise ApplicationError(reason, type="EnrollmentRefused", non_retryable=True)


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=min(int(value), 60)) if value.isdigit() else None


async def fetch_preflight(
    client: httpx.AsyncClient, target: requester.EnrollmentTarget
) -> Preflight:
    """GET the enrollment URL: what the token is for, without consuming it."""
    try:
        response = await client.get(target.url)
    except httpx.HTTPError as exc:
        raise ApplicationError(
            f"remote {target.host} unreachable: {type(exc).__name__}", type="RemoteUnavailable"
        ) from None
    _raise_for_remote(response)
    body: dict[str, Any] = response.json()
    try:
        return Preflight(
            remote_host=target.host,
            common_name=str(body["peerCommonName"]),
            grant_id=str(uuid.UUID(str(body["grantId"]))),
            subject_user_id=str(uuid.UUID(str(body["subjectUserId"]))),
            expires_at=str(body["expiresAt"]),
        )
    except (KeyError, ValueError):
        raise ApplicationError(
            "remote preflight answer is malformed", type="EnrollmentRefused", non_retryable=True
        ) from None


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

    async def _target(self, peer_id: str) -> requester.EnrollmentTarget:
        async with self._sessions() as session:
            url = await requester.read_enrollment_url(session, self._sealer, uuid.UUID(peer_id))
        return requester.parse_enrollment_url(
            url, allow_http_loopback=self._remote.allow_http_loopback
        )

    @activity.defn(name="peer_add.preflight")
    @domain_errors
    async def preflight(self, arg: PeerRef) -> Preflight:
        target = await self._target(arg.peer_id)
        async with remote_client(self._remote) as client:
            found = await fetch_preflight(client, target)
        async with self._sessions() as session:
            await requester.record_preflight(
                session,
                uuid.UUID(arg.peer_id),
                common_name=found.common_name,
                grant_id=found.grant_id,
                subject_user_id=found.subject_user_id,
            )
        return found

    @activity.defn(name="peer_add.make_csr")
    @domain_errors
    async def make_csr(self, arg: PeerRef) -> str:
        async with self._sessions() as session:
            return await requester.ensure_client_csr(session, self._sealer, uuid.UUID(arg.peer_id))

    @activity.defn(name="peer_add.submit")
    @domain_errors
    async def submit(self, arg: SubmitInput) -> Received:
        target = await self._target(arg.peer_id)
        async with remote_client(self._remote) as client:
            try:
                response = await client.post(target.url, json={"csrPem": arg.csr_pem})
            except httpx.HTTPError as exc:
                raise ApplicationError(
                    f"remote {target.host} unreachable: {type(exc).__name__}",
                    type="RemoteUnavailable",
                ) from None
        _raise_for_remote(response)
        try:
            body = response.json()
            return Received(str(body["certPem"]), str(body.get("certChainPem", "")))
        except (KeyError, ValueError):
            raise ApplicationError(
                "remote answer holds no certificate", type="EnrollmentRefused", non_retryable=True
            ) from None

    @activity.defn(name="peer_add.verify")
    @domain_errors
    async def verify(self, arg: VerifyReceivedInput) -> Checked:
        async with self._sessions() as session:
            peer = await requester.get_peer(session, uuid.UUID(arg.peer_id))
        verified = requester.verify_received_certificate(
            arg.cert_pem,
            arg.chain_pem,
            public_key=requester.client_public_key(self._sealer, peer),
            grant_id=arg.grant_id,
            subject_user_id=arg.subject_user_id,
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
            await requester.store_certificate(
                session,
                uuid.UUID(arg.peer_id),
                cert_pem=arg.cert_pem,
                verified=verified,
                actor="peer-add",
                request_id=arg.request_id,
            )
        log.info("peer %s active with certificate %s", arg.peer_id, c.serial)

    @activity.defn(name="peer_add.mark_failed")
    async def mark_failed(self, arg: FailInput) -> None:
        async with self._sessions() as session:
            await requester.mark_failed(
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
