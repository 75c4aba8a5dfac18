"""TLS for a listener: the server context, and the ASGI TLS extension an app reads
the verified client certificate from
(https://asgi.readthedocs.io/en/latest/extensions.html#tls)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

# ssl.SSLObject.version() names → the numbers the ASGI extension carries.
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@dataclass(frozen=True)
class ServerTLS:
    """A listener's certificate and key (PEM files) and, for mTLS, the CA (PEM text)
    client certificates must chain to."""

    certfile: str
    keyfile: str
    client_ca_pem: str | None
    require_client_cert: bool
    # For a key file kept encrypted (the built-in CA's listener key).
    key_password: str | None = None

    def context(self) -> ssl.SSLContext:
        """TLS 1.2+; with a client CA, only that CA is trusted (never the system store),
        and with ``require_client_cert`` a connection without a valid client cert fails."""
        if self.require_client_cert and not self.client_ca_pem:
            raise ValueError("a client certificate is required but no client CA is given")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # Client-initiated renegotiation is a cheap way to make the server do handshakes.
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.set_alpn_protocols(["http/1.1"])
        context.load_cert_chain(self.certfile, self.keyfile, password=self.key_password)
        if self.client_ca_pem:
            context.load_verify_locations(cadata=self.client_ca_pem)
            context.verify_mode = (
                ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
            )
        return context


@dataclass(frozen=True)
class ListenerTLS:
    """What a TLS listener needs per connection, computed once per server."""

    context: ssl.SSLContext
    server_cert_pem: str
    # OpenSSL cipher name → IANA cipher suite number.
    cipher_ids: dict[str, int]

    @classmethod
    def from_config(cls, tls: ServerTLS) -> ListenerTLS:
        context = tls.context()
        leaf = x509.load_pem_x509_certificates(Path(tls.certfile).read_bytes())[0]
        return cls(
            context=context,
            server_cert_pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
            cipher_ids={c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()},
        )


def tls_extension(ssl_object: ssl.SSLObject, listener: ListenerTLS) -> dict[str, Any]:
    """``scope["extensions"]["tls"]`` for a connection whose handshake completed."""
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        "server_cert": listener.server_cert_pem,
        # Python 3.11's ssl exposes only the peer's leaf (getpeercert); the verified
        # chain (SSLSocket.get_verified_chain) arrives in 3.13. So: the leaf, alone.
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": (
            x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else None
        ),
        # A presented certificate that fails verification fails the handshake (OpenSSL
        # does so for CERT_OPTIONAL too), so a connection that exists has no error.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": listener.cipher_ids.get(cipher[0]) if cipher else None,
    }
