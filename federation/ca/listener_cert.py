"""The federation listener's own TLS certificate when the built-in CA runs the gateway.

Peers pin B's CA at enrollment and verify B's listener against it, so the listener's
server certificate comes from that same CA. It is issued on first start and again when
its names change or a third of its life is left; the key is kept encrypted (like the
CA's own keys) under a generated password beside it.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from federation.ca.builtin import BuiltinCA
from federation.ca.files import write_private_file
from federation.ca.hierarchy import encrypted_key_pem

LIFETIME = timedelta(days=90)
_CERT = "federation-listener.crt"
_KEY = "federation-listener.key"
_PASSWORD = "federation-listener.password"  # noqa: S105 - a file name


@dataclass(frozen=True)
class ListenerCredentials:
    certfile: Path  # leaf, then the intermediate
    keyfile: Path
    password: str | None


def builtin_listener_credentials(
    ca: BuiltinCA, directory: Path, names: list[str]
) -> ListenerCredentials:
    """Credentials for a listener serving ``names``: reused while good, else issued anew."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    current = ListenerCredentials(
        directory / _CERT,
        directory / _KEY,
        _read(directory / _PASSWORD),
    )
    if current.password is not None and _still_good(current.certfile, ca, names):
        return current
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem, chain_pem = ca.sign_server_certificate(key.public_key(), names, LIFETIME)
    password = secrets.token_urlsafe(32)
    write_private_file(directory / _PASSWORD, password.encode())
    write_private_file(directory / _KEY, encrypted_key_pem(key, password.encode()))
    write_private_file(directory / _CERT, (cert_pem + chain_pem).encode())
    return ListenerCredentials(directory / _CERT, directory / _KEY, password)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _still_good(certfile: Path, ca: BuiltinCA, names: list[str]) -> bool:
    try:
        leaf = x509.load_pem_x509_certificates(certfile.read_bytes())[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        leaf.verify_directly_issued_by(ca.intermediate_certificates()[0])
    except (OSError, ValueError, IndexError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    held = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    held |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names}
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    return held == wanted and leaf.not_valid_after_utc - datetime.now(UTC) > life / 3


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
