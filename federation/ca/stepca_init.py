"""Write a ready-to-run step-ca configuration without the ``step`` CLI.

The layout mirrors ``step ca init`` (``certs/``, ``secrets/``, ``config/``,
``db/``, ``templates/``) so an operator finds files where step's docs say they
are. Only ``cryptography`` is used: the Debian step-ca build has no ``step``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.ca.hierarchy import certificate_pem, encrypted_key_pem, new_hierarchy

PROVISIONER_NAME = "mosaic-fed"
DEFAULT_DNS_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class StepCAFiles:
    """Paths of an initialised step-ca directory and the URL it will serve."""

    directory: Path
    ca_json: Path
    root_cert: Path
    intermediate_cert: Path
    password_file: Path
    provisioner_key_json: Path
    template: Path
    url: str


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an EC JWK, base64url without padding."""
    if jwk.get("kty") != "EC":
        raise ValueError("only EC JWKs are supported")
    required = {member: jwk[member] for member in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def init_step_ca(
    directory: Path,
    *,
    address: str = "127.0.0.1:9000",
    dns_names: list[str] | None = None,
    template_path: Path | None = None,
) -> StepCAFiles:
    """Create root, intermediate, provisioner and ``config/ca.json`` under ``directory``.

    Idempotent: when ``config/ca.json`` already exists nothing is touched and
    the existing files (and the address recorded in ca.json) are returned.
    ``template_path`` replaces the bundled ``federation.tpl``.
    """
    directory = directory.resolve()
    files = _layout(directory, address)
    if files.ca_json.exists():
        existing = json.loads(files.ca_json.read_text(encoding="utf-8"))
        return _layout(directory, str(existing["address"]))

    for sub, mode in (
        ("certs", 0o755),
        ("secrets", 0o700),
        ("config", 0o755),
        ("db", 0o700),
        ("templates", 0o755),
    ):
        (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / sub).chmod(mode)

    password = secrets.token_urlsafe(32).encode("ascii")
    _write_private(files.password_file, password)

    made = new_hierarchy()

    _write_private(
        directory / "secrets" / "root_ca_key", encrypted_key_pem(made.root_key, password)
    )
    _write_private(
        directory / "secrets" / "intermediate_ca_key",
        encrypted_key_pem(made.intermediate_key, password),
    )
    _write_public(files.root_cert, certificate_pem(made.root))
    _write_public(files.intermediate_cert, certificate_pem(made.intermediate))

    public_jwk, private_jwk = _provisioner_jwk()
    _write_private(files.provisioner_key_json, json.dumps(private_jwk, indent=2).encode("utf-8"))

    source = template_path or Path(
        str(resources.files("federation.ca").joinpath("templates", "federation.tpl"))
    )
    shutil.copyfile(source, files.template)

    config = _ca_config(
        directory=directory,
        files=files,
        address=address,
        dns_names=list(dns_names) if dns_names is not None else list(DEFAULT_DNS_NAMES),
        public_jwk=public_jwk,
    )
    # Written last: its presence is what marks the directory as complete.
    _write_private(files.ca_json, json.dumps(config, indent=2).encode("utf-8"))
    return files


def _layout(directory: Path, address: str) -> StepCAFiles:
    return StepCAFiles(
        directory=directory,
        ca_json=directory / "config" / "ca.json",
        root_cert=directory / "certs" / "root_ca.crt",
        intermediate_cert=directory / "certs" / "intermediate_ca.crt",
        password_file=directory / "secrets" / "password",
        provisioner_key_json=directory / "secrets" / f"{PROVISIONER_NAME}.json",
        template=directory / "templates" / "federation.tpl",
        url=f"https://{address}",
    )


def _b64url_uint(value: int, size: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode("ascii")


def _provisioner_jwk() -> tuple[dict[str, str], dict[str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    public = {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url_uint(numbers.public_numbers.x, 32),
        "y": _b64url_uint(numbers.public_numbers.y, 32),
    }
    public = {"use": "sig", "alg": "ES256", "kid": jwk_thumbprint(public), **public}
    private = {**public, "d": _b64url_uint(numbers.private_value, 32)}
    return public, private


def _ca_config(
    *,
    directory: Path,
    files: StepCAFiles,
    address: str,
    dns_names: list[str],
    public_jwk: dict[str, str],
) -> dict[str, Any]:
    return {
        "root": str(files.root_cert),
        "crt": str(files.intermediate_cert),
        "key": str(directory / "secrets" / "intermediate_ca_key"),
        "address": address,
        "dnsNames": dns_names,
        "logger": {"format": "json"},
        # Needed for one-time-token replay protection and for revocation.
        "db": {"type": "badgerv2", "dataSource": str(directory / "db")},
        "authority": {
            "provisioners": [
                {
                    "type": "JWK",
                    "name": PROVISIONER_NAME,
                    "key": public_jwk,
                    "claims": {
                        # MOSAIC_CERT_LIFETIME_SECONDS may be as short as 60 s.
                        "minTLSCertDuration": "30s",
                        "maxTLSCertDuration": "2160h",
                        "defaultTLSCertDuration": "720h",
                    },
                    "options": {"x509": {"templateFile": str(files.template)}},
                }
            ]
        },
        "tls": {
            "cipherSuites": [
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            ],
            "minVersion": 1.2,
            "maxVersion": 1.3,
            "renegotiation": False,
        },
    }


def _write_private(path: Path, data: bytes) -> None:
    _atomic_write(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _atomic_write(path, data, 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates the file 0600, so a secret is never readable by others,
    # even for the instant before chmod.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


LISTENER_LIFETIME = timedelta(days=365)


def issue_listener_certificate(
    directory: Path, names: list[str], *, lifetime: timedelta = LISTENER_LIFETIME
) -> tuple[Path, Path]:
    """A TLS server certificate for the gateway's federation listener, signed by this CA's
    intermediate (peers pin this CA's root and verify the listener against it).

    Returns (``certs/federation-listener.crt``: leaf then intermediate,
    ``secrets/federation-listener.key``: 0600) for MOSAIC_FEDERATION_TLS_CERT / _KEY.
    """
    from federation.ca.builtin import BuiltinCA

    # The directory has the built-in CA's layout: it can sign with the same code.
    signer = BuiltinCA.open_or_create(directory.resolve())
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem, chain_pem = signer.sign_server_certificate(key.public_key(), names, lifetime)
    certfile = directory / "certs" / "federation-listener.crt"
    keyfile = directory / "secrets" / "federation-listener.key"
    _write_public(certfile, (cert_pem + chain_pem).encode("ascii"))
    _write_private(
        keyfile,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return certfile, keyfile
