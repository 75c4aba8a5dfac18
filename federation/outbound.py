"""Gateway A's calls to gateway B's federation listener, over mTLS with A's certificate.

One channel (an HTTP connection pool) per peer and certificate: reused across calls,
replaced when the peer's certificate changes. The channel trusts only B's CA as pinned
at enrollment, never the system store, and connects only to addresses the policy
allows. The client key is unsealed for the moment a channel is built: OpenSSL reads it
from an anonymous in-memory file (memfd, never on disk), encrypted even there under a
one-time password; it is never logged nor put in workflow history.

Every answer is size-capped and classified, so callers can tell a TLS refusal, a 401,
a 403, a 404 and an unreachable remote apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.client_key import open_client_key
from federation.db.models import Peer
from federation.errors import Conflict, NotFound
from federation.remote_answers import RemoteAnswerRejected, one_line
from federation.remote_gateway import read_capped
from federation.remote_url import (
    AddressNotAllowed,
    AddressPolicy,
    RemoteTarget,
    federation_target,
    resolve_target,
)
from federation.requesting_peer import mark_revoked_by_remote
from federation.sealing import Sealer

CALL_SECONDS = 30.0
# A peer in these states holds a certificate its remote may still accept.
CALLING_STATES = ("active", "degraded")
# How a refusal is named: the CLI's exit codes follow these.
REASONS = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}


@dataclass(frozen=True)
class PeerCredential:
    """What A needs to call B as one of its peers; built from the peer row, key unsealed."""

    peer_id: uuid.UUID
    serial: str
    cert_pem: str
    chain_pem: str
    key: ec.EllipticCurvePrivateKey
    ca_pem: str
    federation_url: str

    def __repr__(self) -> str:  # the key must never reach a log line through a repr
        return f"PeerCredential(peer_id={self.peer_id}, serial={self.serial})"


@dataclass(frozen=True)
class RemoteReply:
    """B's answer: its status and JSON body, or why there was none."""

    status: int | None
    body: dict[str, Any] | None
    # None on a 2xx; else unauthenticated, forbidden, revoked, not_found, conflict,
    # refused, unavailable, unreachable, tls or invalid.
    reason: str | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    fd = os.memfd_create("mosaic-peer-credential", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def mtls_context(credential: PeerCredential) -> ssl.SSLContext:
    """Client TLS: B's pinned CA only; A's certificate (and chain) with its key."""
    context = ssl.create_default_context(cadata=credential.ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    password = secrets.token_bytes(32)
    key_pem = credential.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    chain = (credential.cert_pem + credential.chain_pem).encode("ascii")
    with _memory_file(chain) as certfile, _memory_file(key_pem) as keyfile:
        context.load_cert_chain(certfile, keyfile, password=password)
    return context


def peer_credential(peer: Peer, sealer: Sealer) -> PeerCredential:
    """The credential of a requesting-side peer able to call its remote (key unsealed)."""
    if peer.state not in CALLING_STATES:
        raise Conflict(f"peer is {peer.state}; it cannot call its remote")
    if not (peer.cert_pem and peer.cert_serial and peer.remote_ca_pem and peer.federation_url):
        raise Conflict("peer has no federation credential: no certificate, pinned CA or listener")
    return PeerCredential(
        peer_id=peer.id,
        serial=peer.cert_serial,
        cert_pem=peer.cert_pem,
        chain_pem=peer.cert_chain_pem or "",
        key=open_client_key(sealer, peer),
        ca_pem=peer.remote_ca_pem,
        federation_url=peer.federation_url,
    )


class FederationChannel:
    """A keep-alive connection pool to one remote listener, as one peer certificate."""

    def __init__(self, credential: PeerCredential, policy: AddressPolicy, max_bytes: int) -> None:
        self.serial = credential.serial
        self._target: RemoteTarget = federation_target(credential.federation_url, policy)
        self._policy = policy
        self._max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            verify=mtls_context(credential),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(CALL_SECONDS, connect=5),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> RemoteReply:
        """One request to ``/api/federation/v1/<path>``; never raises for a remote's answer."""
        try:
            addresses = await resolve_target(self._target, self._policy)
        except AddressNotAllowed as refused:
            return RemoteReply(None, None, "refused", refused.message)
        except (OSError, TimeoutError) as exc:
            return RemoteReply(None, None, "unreachable", f"name does not resolve: {exc}")
        literal = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
        request = self._client.build_request(
            method,
            f"https://{literal}:{self._target.port}/api/federation/v1/{path}",
            json=body,
            headers={"Host": self._target.host, "Accept-Encoding": "identity"},
            extensions={"sni_hostname": self._target.hostname},
        )
        try:
            async with asyncio.timeout(CALL_SECONDS):
                response = await self._client.send(request, stream=True)
                try:
                    content = await read_capped(response, self._max_bytes)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, ssl.SSLError, TimeoutError) as exc:
            # A refused client certificate arrives as the remote's TLS alert (TLS 1.3: on
            # the first read), sometimes unwrapped by httpx.
            reason = "tls" if _is_tls(exc) else "unreachable"
            return RemoteReply(None, None, reason, one_line(str(exc)) or type(exc).__name__)
        except RemoteAnswerRejected as rejected:
            return RemoteReply(None, None, "invalid", rejected.message)
        return _reply(response.status_code, content)

    async def aclose(self) -> None:
        await self._client.aclose()


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reply(status: int, content: bytes) -> RemoteReply:
    try:
        parsed = json.loads(content) if content else {}
    except ValueError:
        parsed = None
    body = parsed if isinstance(parsed, dict) else None
    if 200 <= status < 300:
        if body is None:
            return RemoteReply(status, None, "invalid", "answer is not a JSON object")
        return RemoteReply(status, body, None)
    detail = one_line((body or {}).get("detail")) or f"HTTP {status}"
    if status in REASONS:
        reason = REASONS[status]
    elif status in (409, 410):
        reason = "conflict"
    elif status == 429 or status >= 500:
        reason = "unavailable"
    else:
        reason = "refused"
    return RemoteReply(status, body, reason, detail)


async def call_as_peer(
    sessions: async_sessionmaker[AsyncSession],
    sealer: Sealer,
    channels: Channels,
    peer_id: uuid.UUID,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    request_id: str,
) -> RemoteReply:
    """Call the remote as this peer; a 403 is looked into before it is believed.

    If the certificate was replaced meanwhile (a renewal swapped it), the call is made
    again once on the new one. Otherwise the remote is asked about the certificate
    itself: when it says revoked for cause, the peer becomes ``revoked`` here at once
    and the answer's reason is ``revoked``. A network error never revokes anything.
    """
    for attempt in range(2):
        async with sessions() as session:
            credential = peer_credential(await _peer(session, peer_id), sealer)
        channel = await channels.channel(credential)
        reply = await channel.call(method, path, body)
        if reply.reason != "forbidden":
            return reply
        async with sessions() as session:
            now_serial = (await _peer(session, peer_id)).cert_serial
        if now_serial != credential.serial and attempt == 0:
            continue
        status = await channel.call("GET", "certificate")
        if status.ok and status.body and status.body.get("withdrawnForCause") is True:
            why = one_line(status.body.get("reason")) or "revoked"
            async with sessions() as session:
                await mark_revoked_by_remote(
                    session, peer_id, serial=credential.serial, reason=why, request_id=request_id
                )
            await channels.drop(peer_id)
            return RemoteReply(reply.status, reply.body, "revoked", f"certificate revoked: {why}")
        return reply
    return reply


async def _peer(session: AsyncSession, peer_id: uuid.UUID) -> Peer:
    peer = await session.get(Peer, peer_id, populate_existing=True)
    if peer is None:
        raise NotFound("peer not found")
    return peer


class Channels:
    """The channels of one process, one per peer, rebuilt when its certificate changes."""

    def __init__(self, policy: AddressPolicy, max_bytes: int) -> None:
        self._policy = policy
        self._max_bytes = max_bytes
        self._channels: dict[uuid.UUID, FederationChannel] = {}
        self._lock = asyncio.Lock()

    async def channel(self, credential: PeerCredential) -> FederationChannel:
        async with self._lock:
            current = self._channels.get(credential.peer_id)
            if current is not None and current.serial == credential.serial:
                return current
            fresh = FederationChannel(credential, self._policy, self._max_bytes)
            self._channels[credential.peer_id] = fresh
        if current is not None:
            # Calls already on the old pool finish on it (B accepts the old certificate
            # through its overlap window); new ones use the new certificate.
            asyncio.get_running_loop().call_later(CALL_SECONDS, _close_later, current)
        return fresh

    async def drop(self, peer_id: uuid.UUID) -> None:
        async with self._lock:
            channel = self._channels.pop(peer_id, None)
        if channel is not None:
            await channel.aclose()

    async def aclose(self) -> None:
        async with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.aclose()


def _close_later(channel: FederationChannel) -> None:
    asyncio.ensure_future(channel.aclose())
