"""A TLS listener built by ``api.server.build_server`` with a client certificate
required: the app reads the verified client certificate from the ASGI TLS extension;
a certificate from another CA, or none, fails the handshake and the app never runs."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api.server import ServerTLS, build_server
from federation.ca.base import IssueRequest
from federation.ca.builtin import BuiltinCA
from federation.ca.hierarchy import new_hierarchy
from tests.conftest import make_settings
from tests.support.listeners import RecordingApp, assert_cut_off, serving
from tests.support.pki import make_csr
from tests.support.stepca import free_port

PEER_CN = "gw-a.example.com"
HEADER_TIMEOUT = 1.0


@dataclass
class TLSListener:
    url: str
    port: int
    app: RecordingApp
    server_root_pem: str
    server_cert_pem: str


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def server_files(directory: Path) -> tuple[Path, Path, str, str]:
    """A 127.0.0.1 server certificate under a CA of its own: (cert, key, root PEM, leaf PEM)."""
    hierarchy = new_hierarchy()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(hierarchy.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(hierarchy.intermediate_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_text(pem(leaf) + pem(hierarchy.intermediate))
    key_path.write_bytes(private_pem(key))
    return cert_path, key_path, pem(hierarchy.root), pem(leaf)


async def client_files(ca: BuiltinCA, directory: Path) -> tuple[Path, Path, str]:
    """A peer certificate issued by ``ca`` for PEER_CN: (cert + chain, key, leaf PEM)."""
    csr_pem, key = make_csr(PEER_CN)
    issued = await ca.issue(
        IssueRequest(csr_pem=csr_pem, grant_id=str(uuid.uuid4()), subject_user_id=str(uuid.uuid4()))
    )
    cert_path, key_path = write_cert_and_key(directory, issued.cert_pem + issued.chain_pem, key)
    return cert_path, key_path, issued.cert_pem


def write_cert_and_key(
    directory: Path, chain_pem: str, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "client.crt", directory / "client.key"
    cert_path.write_text(chain_pem)
    key_path.write_bytes(private_pem(key))
    return cert_path, key_path


@pytest.fixture
async def trusted_ca(tmp_path: Path) -> BuiltinCA:
    return BuiltinCA.open_or_create(tmp_path / "trusted-ca")


@pytest.fixture
async def mtls_listener(trusted_ca: BuiltinCA, tmp_path: Path) -> AsyncIterator[TLSListener]:
    cert, key, root_pem, leaf_pem = server_files(tmp_path)
    tls = ServerTLS(
        certfile=str(cert),
        keyfile=str(key),
        client_ca_pem=pem(trusted_ca.root_certificates()[0]),
        require_client_cert=True,
    )
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        tmp_path,
        mosaic_header_timeout_seconds=HEADER_TIMEOUT,
    )
    app, port = RecordingApp(), free_port()
    server = build_server(app, host="127.0.0.1", port=port, settings=settings, tls=tls)
    async with serving(server):
        yield TLSListener(f"https://127.0.0.1:{port}", port, app, root_pem, leaf_pem)


def client_context(listener: TLSListener, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=listener.server_root_pem)
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_the_app_reads_the_verified_client_certificate_from_the_tls_extension(
    mtls_listener: TLSListener, trusted_ca: BuiltinCA, tmp_path: Path
) -> None:
    cert, key, leaf_pem = await client_files(trusted_ca, tmp_path / "peer")
    context = client_context(mtls_listener, cert, key)
    async with httpx.AsyncClient(verify=context) as http:
        first = (await http.get(f"{mtls_listener.url}/whoami")).json()
        second = (await http.get(f"{mtls_listener.url}/again")).json()

    tls = first["tls"]
    assert first["scheme"] == "https"
    assert [x509.load_pem_x509_certificate(c.encode()) for c in tls["client_cert_chain"]] == [
        x509.load_pem_x509_certificate(leaf_pem.encode())
    ]
    assert tls["client_cert_name"] == f"CN={PEER_CN}"
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304  # both ends speak TLS 1.3
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)  # the TLS 1.3 suites
    assert tls["server_cert"] == mtls_listener.server_cert_pem
    assert second["tls"] == tls  # same connection, same extension
    assert mtls_listener.app.requests == ["/whoami", "/again"]


@pytest.mark.parametrize("presented", ["other-ca", "none"])
async def test_a_client_without_a_certificate_from_the_trusted_ca_fails_the_handshake(
    mtls_listener: TLSListener, presented: str, tmp_path: Path
) -> None:
    if presented == "other-ca":
        other = BuiltinCA.open_or_create(tmp_path / "other-ca")
        cert, key, _ = await client_files(other, tmp_path / "stranger")
        context = client_context(mtls_listener, cert, key)
    else:
        context = client_context(mtls_listener, None, None)
    async with httpx.AsyncClient(verify=context) as http:
        # The listener sends the alert (api/tls_alerts.py): over TLS 1.3 it surfaces on
        # the first read, as the ssl module's own error.
        with pytest.raises((httpx.TransportError, ssl.SSLError)) as refused:
            await http.get(f"{mtls_listener.url}/whoami")
    assert "alert" in repr(refused.value).lower() or "alert" in repr(refused.value.__context__)
    assert mtls_listener.app.requests == []


async def test_a_tls_client_that_never_starts_the_handshake_is_cut_off(
    mtls_listener: TLSListener,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mtls_listener.port)
    opened = asyncio.get_running_loop().time()
    await assert_cut_off(reader, since=opened, after=HEADER_TIMEOUT)
    writer.close()


def test_requiring_a_client_certificate_without_a_client_ca_is_refused(tmp_path: Path) -> None:
    cert, key, _, _ = server_files(tmp_path)
    tls = ServerTLS(str(cert), str(key), client_ca_pem=None, require_client_cert=True)
    with pytest.raises(ValueError, match="no client CA"):
        tls.context()


def test_the_server_context_is_tls12_plus_and_trusts_only_the_given_ca(
    trusted_ca: BuiltinCA, tmp_path: Path
) -> None:
    cert, key, _, _ = server_files(tmp_path)
    root = trusted_ca.root_certificates()[0]
    context = ServerTLS(str(cert), str(key), pem(root), require_client_cert=True).context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    trusted = context.get_ca_certs(binary_form=True)
    assert trusted == [root.public_bytes(serialization.Encoding.DER)]
