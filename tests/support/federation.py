"""Gateway B's federation listener served for real (uvicorn, TLS, client certificate
required) in the test process, peers enrolled through the real redeem, and
certificates forged with B's own intermediate key for the guard's refusal paths."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api.federation_app import create_federation_app
from api.federation_gate import FederationGate
from api.federation_listener import federation_listener
from api.server import build_server
from api.state import Gateway
from federation.ca.base import CertificateAuthority
from federation.ca.builtin import BuiltinCA
from federation.ca.stepca import StepCA
from federation.ca.stepca_init import issue_listener_certificate
from federation.pki.der import encode_utf8string
from federation.pki.oids import GRANT_ID_OID, SUBJECT_USER_ID_OID
from federation.settings import Settings
from tests.support.factories import make_grant, make_token
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer, free_port

PEM = serialization.Encoding.PEM


@dataclass
class Listener:
    url: str
    ca_pem: str  # the root A pins
    gate: FederationGate
    gateway: Gateway
    directory: Path

    async def flush_audit(self) -> None:
        await self.gate.state.audit.flush()


@dataclass
class EnrolledPeer:
    """A peer enrolled with B for real: its grant, user, key and certificate."""

    grant: dict[str, Any]
    key: ec.EllipticCurvePrivateKey
    cert_pem: str
    chain_pem: str
    serial: str

    @property
    def grant_id(self) -> str:
        return str(self.grant["id"])

    @property
    def user_id(self) -> str:
        return str(self.grant["subjectUserId"])


def _issuer(ca: CertificateAuthority, step_ca: StepCAServer) -> BuiltinCA:
    """B's intermediate as a signer: the built-in CA itself, or step-ca's directory opened
    the same way (it has the built-in CA's layout)."""
    if isinstance(ca, BuiltinCA):
        return ca
    assert isinstance(ca, StepCA)
    return BuiltinCA.open_or_create(step_ca.directory)


@asynccontextmanager
async def running_listener(
    settings: Settings, ca: CertificateAuthority, step_ca: StepCAServer, directory: Path
) -> AsyncIterator[Listener]:
    """B's federation app on a real TLS listener, trusting the lane's CA."""
    port = free_port()
    names = ["127.0.0.1", "localhost"]
    if isinstance(ca, StepCA):
        certfile, keyfile = issue_listener_certificate(step_ca.directory, names)
        tls_settings = {
            "mosaic_federation_tls_cert": str(certfile),
            "mosaic_federation_tls_key": str(keyfile),
        }
    else:
        tls_settings = {}
    lane = settings.model_copy(
        update={
            "mosaic_federation_listen": f"127.0.0.1:{port}",
            "mosaic_data_dir": directory,
            **tls_settings,
        }
    )
    gateway = Gateway.from_settings(lane)
    gateway._ca = ca  # noqa: SLF001 - the lane's CA, the one its worker signs with
    plan = federation_listener(lane, ca)
    assert plan is not None and plan.tls is not None
    gate = create_federation_app(lane, gateway)
    assert isinstance(gate, FederationGate)
    server = build_server(gate, host="127.0.0.1", port=port, settings=lane, tls=plan.tls)
    task = asyncio.create_task(server.serve())
    for _ in range(300):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    roots = "".join(c.public_bytes(PEM).decode() for c in ca.root_certificates())
    try:
        yield Listener(f"https://127.0.0.1:{port}", roots, gate, gateway, directory)
    finally:
        server.should_exit = True
        await task
        await gateway.close()


async def enroll_peer(
    client: httpx.AsyncClient, scope: dict[str, Any] | None = None
) -> EnrolledPeer:
    """A grant on B and a certificate for it, through the real redeem."""
    grant = await make_grant(client, scope=scope)
    token = (await make_token(client, grant["id"]))["token"]
    csr_pem, key = make_csr(grant["_peer"]["commonName"])
    answer = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return EnrolledPeer(grant, key, body["certPem"], body["certChainPem"], body["certSerial"])


def mtls_client(
    listener: Listener, cert_pem: str, chain_pem: str, key: ec.EllipticCurvePrivateKey
) -> httpx.AsyncClient:
    """A client presenting this certificate (and chain), trusting B's root only."""
    directory = listener.directory / f"client-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    (directory / "cert.pem").write_text(cert_pem + chain_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(cadata=listener.ca_pem)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return httpx.AsyncClient(base_url=listener.url, verify=context, timeout=20)


def forge(
    ca: CertificateAuthority,
    step_ca: StepCAServer,
    key: ec.EllipticCurvePrivateKey,
    *,
    extensions: list[tuple[x509.ObjectIdentifier, bytes]],
) -> tuple[str, str]:
    """A clientAuth certificate signed by B's own intermediate, with whatever Mosaic
    extensions the test asks for (none, malformed, another grant's), and no ledger row."""
    issuer = _issuer(ca, step_ca)
    intermediate = issuer.intermediate_certificates()[0]
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged.example.com")]))
        .issuer_name(intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("forged.example.com")]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(intermediate.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    cert = builder.sign(issuer._intermediate_key, hashes.SHA256())  # noqa: SLF001
    return cert.public_bytes(PEM).decode(), intermediate.public_bytes(PEM).decode()


def mosaic_oids(grant_id: str, user_id: str) -> list[tuple[x509.ObjectIdentifier, bytes]]:
    return [
        (GRANT_ID_OID, encode_utf8string(grant_id)),
        (SUBJECT_USER_ID_OID, encode_utf8string(user_id)),
    ]


def other_ca_client(listener: Listener, directory: Path) -> httpx.AsyncClient:
    """A client whose certificate comes from a CA B does not trust."""
    stranger = BuiltinCA.open_or_create(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem, chain_pem = stranger.sign_server_certificate(
        key.public_key(), ["stranger.example.com"], dt.timedelta(hours=1)
    )
    return mtls_client(listener, cert_pem, chain_pem, key)
