"""Hostile remote gateways for gateway A's peer add: real HTTP servers whose answers
break the enrollment protocol in one way each, and what the tests measure on A."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI, Request, Response

from federation.ca.base import IssueRequest
from federation.ca.builtin import BuiltinCA
from federation.remote_trust import ca_fingerprint
from tests.support.factories import unique
from tests.support.gateways import Gateway, UvicornServer
from tests.support.stepca import free_port

ENROLL = "/api/federation/enrollment"
DROP = object()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def json_answer(value: Any, status: int = 200, **headers: str) -> Response:
    return Response(
        json.dumps(value).encode(), status, headers=headers, media_type="application/json"
    )


def raw_answer(content: bytes, status: int = 200) -> Response:
    return Response(content, status, media_type="application/json")


Redeem = Callable[[str, dict[str, Any]], Awaitable[Response]]


@dataclass
class Case:
    """How the remote answers one token: the preflight body (or answer) and the redeem."""

    preflight: dict[str, Any] | Response
    redeem: Redeem | None = None
    requests: list[str] = field(default_factory=list)

    @property
    def posts(self) -> int:
        return self.requests.count("POST")


class HostileRemote:
    """A FastAPI app on real uvicorn; each token has a ``Case``; requests are recorded.

    Its own CA (a built-in CA, like B's) signs when a case asks it to.
    """

    def __init__(self, ca: BuiltinCA, tls: TLSFiles | None = None) -> None:
        self.ca = ca
        self.root = ca.root_certificates()[0]
        self.cases: dict[str, Case] = {}
        self.app = FastAPI()
        options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)} if tls else {}
        self.server = UvicornServer(self.app, free_port(), options=options)
        self.scheme = "https" if tls else "http"

        @self.app.get(ENROLL + "/{token}")
        async def preflight(token: str) -> Response:
            case = self.cases[token]
            case.requests.append("GET")
            if isinstance(case.preflight, Response):
                return case.preflight
            return json_answer(case.preflight)

        @self.app.post(ENROLL + "/{token}")
        async def redeem(token: str, request: Request) -> Response:
            case = self.cases[token]
            case.requests.append("POST")
            assert case.redeem is not None and isinstance(case.preflight, dict)
            return await case.redeem((await request.json())["csrPem"], case.preflight)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.port}"

    def preflight_body(self, **changes: Any) -> dict[str, Any]:
        """A well-formed preflight answer announcing this remote's CA; ``changes``
        replace fields (``DROP`` removes one)."""
        body: dict[str, Any] = {
            "peerCommonName": f"{unique('a')}.example.com",
            "grantId": str(uuid.uuid4()),
            "subjectUserId": str(uuid.uuid4()),
            "expiresAt": (datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
            "caFingerprint": ca_fingerprint(self.root),
        }
        body.update(changes)
        return {k: v for k, v in body.items() if v is not DROP}

    def add(self, case: Case) -> str:
        """Register a case; returns the enrollment URL that reaches it."""
        token = secrets.token_hex(32)
        self.cases[token] = case
        return f"{self.base_url}{ENROLL}/{token}"

    def case(self, url: str) -> Case:
        return self.cases[url.rsplit("/", 1)[-1]]

    async def signed(
        self, csr_pem: str, pre: dict[str, Any], *, by: BuiltinCA | None = None
    ) -> dict[str, str]:
        """A redeem answer: the CSR signed for the preflight's grant and user (by this
        remote's CA unless ``by``), announcing this remote's root."""
        issued = await (by or self.ca).issue(
            IssueRequest(csr_pem, pre["grantId"], pre["subjectUserId"])
        )
        return {
            "certPem": issued.cert_pem,
            "certChainPem": issued.chain_pem,
            "caCertPem": pem(self.root),
            "grantId": pre["grantId"],
            "subjectUserId": pre["subjectUserId"],
        }

    def honest(self, **changes: Any) -> Case:
        """A case that answers like a good remote: a valid preflight, a signed CSR."""

        async def redeem(csr_pem: str, pre: dict[str, Any]) -> Response:
            return json_answer(await self.signed(csr_pem, pre))

        return Case(preflight=self.preflight_body(**changes), redeem=redeem)


@asynccontextmanager
async def hostile_remote(ca_dir: Path, tls: TLSFiles | None = None) -> AsyncIterator[HostileRemote]:
    remote = HostileRemote(BuiltinCA.open_or_create(ca_dir), tls)
    await remote.server.start()
    try:
        yield remote
    finally:
        await remote.server.stop()


class EndlessAnswer:
    """A raw asyncio server answering any request 200 with a JSON body that never ends
    (``total`` bytes at most, no Content-Length): what A reads is what it chose to."""

    def __init__(self, total: int = 1 << 30) -> None:
        self.total = total
        self.sent = 0
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> EndlessAnswer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                b'{"peerCommonName": "'
            )
            chunk = b"a" * 65536
            while self.sent < self.total:
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # A hung up: that is the point
        finally:
            writer.close()


def rss_bytes() -> int:
    """This process's resident set size (gateway A's worker runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Watch:
    """RSS and /healthz latency of gateway A, sampled while something runs."""

    peak_rss: int = 0
    slowest_health: float = 0.0


@asynccontextmanager
async def watching(gateway: Gateway) -> AsyncIterator[Watch]:
    watch = Watch(peak_rss=rss_bytes())
    loop = asyncio.get_running_loop()

    async def sample() -> None:
        while True:
            started = loop.time()
            response = await gateway.api.get("/healthz")
            assert response.status_code == 200
            watch.slowest_health = max(watch.slowest_health, loop.time() - started)
            watch.peak_rss = max(watch.peak_rss, rss_bytes())
            await asyncio.sleep(0.02)

    task = asyncio.create_task(sample())
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass(frozen=True)
class TLSFiles:
    ca_bundle: Path
    cert: Path
    key: Path


def tls_server_files(directory: Path) -> TLSFiles:
    """A throwaway CA and a server certificate for localhost, 127.0.0.1 and ::1."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile test TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_bundle.write_text(pem(ca))
    files.cert.write_text(pem(leaf))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
