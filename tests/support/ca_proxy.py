"""A TLS-terminating proxy between the gateway and a real step-ca that can lose replies.

It serves a certificate signed by step-ca's own intermediate (so the gateway's pinned
root trusts it), forwards every request to step-ca, and, when told to, swallows the
reply to a ``/1.0/sign`` *after* step-ca has signed: the connection closes with no
answer, exactly what a client timeout or a dropped connection looks like.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.stepca import StepCAServer


def _server_certificate(ca: StepCAServer, directory: Path) -> tuple[Path, Path]:
    """A serverAuth certificate for 127.0.0.1 signed by step-ca's intermediate."""
    password = ca.files.password_file.read_bytes().strip()
    issuer_key = serialization.load_pem_private_key(
        (ca.directory / "secrets" / "intermediate_ca_key").read_bytes(), password=password
    )
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    issuer = x509.load_pem_x509_certificate(ca.files.intermediate_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca-proxy")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    cert_path, key_path = directory / "proxy.crt", directory / "proxy.key"
    cert_path.write_bytes(cert.public_bytes(pem) + issuer.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class LosingProxy:
    upstream: StepCAServer
    directory: Path
    # How many /1.0/sign replies to swallow from now on.
    lose_sign_replies: int = 0
    # Serials of the certificates step-ca signed whose replies were swallowed.
    lost_serials: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        cert, key = _server_certificate(self.upstream, self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self._upstream = httpx.AsyncClient(
            base_url=self.upstream.url,
            verify=ssl.create_default_context(cafile=str(self.upstream.files.root_cert)),
        )
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._upstream.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(headers.get("Content-Length", headers.get("content-length", "0")))
                body = await reader.readexactly(length)
                answer = await self._upstream.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
                if path == "/1.0/sign" and answer.status_code < 300 and self.lose_sign_replies:
                    self.lose_sign_replies -= 1
                    signed = x509.load_pem_x509_certificate(answer.json()["crt"].encode())
                    self.lost_serials.append(format(signed.serial_number, "x"))
                    return  # step-ca signed; the gateway never hears of it
                writer.write(
                    f"HTTP/1.1 {answer.status_code} OK\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(answer.content)}\r\n\r\n".encode()
                    + answer.content
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
