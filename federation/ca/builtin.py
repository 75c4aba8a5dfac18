"""The built-in, file-backed CA: the same interface and OIDs as step-ca.

The directory has step-ca's shape (``certs/root_ca.crt``,
``certs/intermediate_ca.crt``, ``secrets/root_ca_key``,
``secrets/intermediate_ca_key``, ``secrets/password``), so an operator can
move to step-ca by pointing it at the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.ca.base import IssuedCertificate, IssueRequest, checked_id, checked_serial
from federation.ca.files import atomic_write, write_new_file
from federation.ca.hierarchy import certificate_pem, encrypted_key_pem, new_hierarchy
from federation.errors import CARefused, CAUnavailable
from federation.pki.certs import serial_hex
from federation.pki.der import encode_utf8string
from federation.pki.fields import common_names
from federation.pki.fingerprints import public_key_der
from federation.pki.oids import GRANT_ID_OID, SUBJECT_USER_ID_OID

_ROOT_CERT = Path("certs/root_ca.crt")
_INTERMEDIATE_CERT = Path("certs/intermediate_ca.crt")
_ROOT_KEY = Path("secrets/root_ca_key")
_INTERMEDIATE_KEY = Path("secrets/intermediate_ca_key")
_PASSWORD = Path("secrets/password")
_REVOKED = Path("revoked.json")
_REVOKED_LOCK = Path("revoked.json.lock")
_CA_FILES = (_PASSWORD, _ROOT_KEY, _INTERMEDIATE_KEY, _ROOT_CERT, _INTERMEDIATE_CERT)

# step-ca backdates notBefore by a minute so a peer with a slow clock accepts it.
_BACKDATE = timedelta(minutes=1)
_SERIAL = re.compile(r"[0-9a-f]{1,40}")

_SigningKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class _Revocation:
    reason: str
    revoked_at: str


class BuiltinCA:
    """A two-level CA (root, intermediate) kept in a directory."""

    name = "builtin"

    def __init__(
        self,
        directory: Path,
        *,
        root: x509.Certificate,
        intermediate: x509.Certificate,
        intermediate_key: _SigningKey,
        validity: timedelta = timedelta(days=30),
    ) -> None:
        self._directory = directory
        self._root = root
        self._intermediate = intermediate
        self._intermediate_key = intermediate_key
        self._validity = validity

    @classmethod
    def open_or_create(
        cls, directory: Path, *, validity: timedelta = timedelta(days=30)
    ) -> BuiltinCA:
        """Load the CA in ``directory``, creating root and intermediate if none exists.

        An existing CA is never overwritten; a half-present one (some files
        missing) raises ``CAUnavailable`` rather than minting a new root.
        """
        present = [path for path in _CA_FILES if (directory / path).exists()]
        if not present:
            _create(directory)
        elif len(present) != len(_CA_FILES):
            missing = next(path for path in _CA_FILES if path not in present)
            raise CAUnavailable(f"built-in CA directory is incomplete (missing {missing})")
        root, intermediate, key = _load(directory)
        return cls(
            directory,
            root=root,
            intermediate=intermediate,
            intermediate_key=key,
            validity=validity,
        )

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        """Sign the CSR like step-ca's federation template, off the event loop."""
        return await asyncio.to_thread(self._issue, request)

    async def revoke(self, serial: str, *, reason: str) -> None:
        """Record ``serial`` as revoked; revoking it again keeps the first record."""
        if not isinstance(serial, str) or _SERIAL.fullmatch(serial) is None:
            raise CARefused("serial must be lowercase hex")
        await asyncio.to_thread(self._revoke, serial, reason)

    def is_revoked(self, serial: str) -> bool:
        """Return whether ``serial`` was revoked by this CA."""
        return serial in self._read_revocations()

    def root_certificates(self) -> list[x509.Certificate]:
        """Return the trust anchor peers must chain to."""
        return [self._root]

    def intermediate_certificates(self) -> list[x509.Certificate]:
        """The CA that signs the leaves, for listeners that verify client chains."""
        return [self._intermediate]

    def sign_server_certificate(
        self, public_key: ec.EllipticCurvePublicKey, names: list[str], validity: timedelta
    ) -> tuple[str, str]:
        """(certificate PEM, chain PEM) of a TLS server certificate for ``names`` (DNS names
        or IP addresses): the federation listener's, so that peers pinning this CA trust it."""
        sans = [_general_name(name) for name in names]
        cert = (
            self._leaf_builder(names[0], public_key, x509.random_serial_number(), validity)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self._intermediate_key, hashes.SHA256())
        )
        return _pem(cert), _pem(self._intermediate)

    async def check_health(self) -> None:
        """Raise ``CAUnavailable`` if the CA directory or its files vanished."""
        if not await asyncio.to_thread(self._files_present):
            raise CAUnavailable("built-in CA directory is missing")

    def sign_crl(
        self, entries: list[tuple[int, datetime, x509.ReasonFlags | None]], *, lifetime: timedelta
    ) -> bytes:
        """A DER CRL of ``entries`` (serial, revocation time, reason), signed by the
        intermediate that issued them; its number is its issue time in milliseconds."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._intermediate.subject)
            .last_update(now - _BACKDATE)
            .next_update(now + lifetime)
            .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self._intermediate.extensions.get_extension_for_class(
                        x509.SubjectKeyIdentifier
                    ).value
                ),
                critical=False,
            )
        )
        for serial, revoked_at, reason in entries:
            revoked = (
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
            )
            if reason is not None:
                revoked = revoked.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(revoked.build())
        crl = builder.sign(self._intermediate_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)

    def _leaf_builder(
        self,
        common_name: str,
        public_key: CertificatePublicKeyTypes,
        serial: int,
        validity: timedelta,
    ) -> x509.CertificateBuilder:
        """What every leaf of this CA has: name, key, serial, dates (notBefore backdated),
        digitalSignature only, not a CA, key identifiers."""
        now = datetime.now(UTC)
        not_after = min(now + validity, self._intermediate.not_valid_after_utc)
        if not_after <= now:
            raise CAUnavailable("built-in CA intermediate certificate has expired")
        issuer_ski = self._intermediate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._intermediate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
                critical=False,
            )
        )

    def _files_present(self) -> bool:
        return all((self._directory / path).is_file() for path in _CA_FILES)

    def _issue(self, request: IssueRequest) -> IssuedCertificate:
        grant_id = checked_id(request.grant_id, "grant id")
        subject_user_id = checked_id(request.subject_user_id, "subject user id")
        serial = checked_serial(request.serial)
        csr = _load_csr(request.csr_pem)
        common_name = _csr_common_name(csr)
        dns_names = _csr_dns_names(csr) or [common_name]
        try:
            san = x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names])
        except ValueError:
            raise CARefused("CSR names are not valid DNS names") from None

        try:
            public_key = csr.public_key()
        # Unknown key algorithms surface as several exception types.
        except Exception:
            raise CARefused("CSR key type is not supported") from None

        builder = (
            self._leaf_builder(common_name, public_key, serial, self._validity)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(san, critical=False)
            .add_extension(
                x509.UnrecognizedExtension(GRANT_ID_OID, encode_utf8string(grant_id)),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(SUBJECT_USER_ID_OID, encode_utf8string(subject_user_id)),
                critical=False,
            )
        )
        try:
            cert = builder.sign(self._intermediate_key, hashes.SHA256())
        except (TypeError, ValueError) as exc:
            raise CARefused("CSR key cannot be certified", cause=str(exc)) from None
        return IssuedCertificate(
            cert_pem=_pem(cert),
            chain_pem=_pem(self._intermediate),
            serial=serial_hex(cert),
        )

    def _revoke(self, serial: str, reason: str) -> None:
        with self._revocation_lock():
            revoked = self._read_revocations()
            if serial in revoked:
                return
            revoked[serial] = _Revocation(reason=reason, revoked_at=datetime.now(UTC).isoformat())
            document = {
                "revoked": {
                    key: {"reason": entry.reason, "revoked_at": entry.revoked_at}
                    for key, entry in sorted(revoked.items())
                }
            }
            atomic_write(self._directory / _REVOKED, json.dumps(document, indent=2).encode())

    @contextlib.contextmanager
    def _revocation_lock(self) -> Iterator[None]:
        # A file lock, not an asyncio.Lock: the API and the workers are separate
        # processes that may share this directory.
        fd = os.open(self._directory / _REVOKED_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_revocations(self) -> dict[str, _Revocation]:
        try:
            raw = (self._directory / _REVOKED).read_bytes()
        except FileNotFoundError:
            return {}
        try:
            entries = json.loads(raw)["revoked"]
            return {
                serial: _Revocation(
                    reason=str(entry["reason"]), revoked_at=str(entry["revoked_at"])
                )
                for serial, entry in entries.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CAUnavailable(
                "built-in CA revocation list is unreadable", cause=str(exc)
            ) from None


def _create(directory: Path) -> None:
    for folder in (directory, directory / "certs", directory / "secrets"):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; make it exact.
        folder.chmod(0o700)

    password = secrets.token_urlsafe(32).encode()
    made = new_hierarchy()

    # Password first: O_EXCL on it makes a concurrent creator fail instead of
    # writing a second, different CA over this one.
    write_new_file(directory / _PASSWORD, password)
    write_new_file(directory / _ROOT_KEY, encrypted_key_pem(made.root_key, password))
    intermediate_key = encrypted_key_pem(made.intermediate_key, password)
    write_new_file(directory / _INTERMEDIATE_KEY, intermediate_key)
    write_new_file(directory / _ROOT_CERT, certificate_pem(made.root))
    write_new_file(directory / _INTERMEDIATE_CERT, certificate_pem(made.intermediate))


def _load(directory: Path) -> tuple[x509.Certificate, x509.Certificate, _SigningKey]:
    try:
        # step reads password files trimmed, so do the same.
        password = (directory / _PASSWORD).read_bytes().strip()
        root = x509.load_pem_x509_certificate((directory / _ROOT_CERT).read_bytes())
        intermediate = x509.load_pem_x509_certificate((directory / _INTERMEDIATE_CERT).read_bytes())
        key = serialization.load_pem_private_key(
            (directory / _INTERMEDIATE_KEY).read_bytes(), password=password
        )
    except (OSError, ValueError, TypeError) as exc:
        raise CAUnavailable("built-in CA files could not be loaded", cause=str(exc)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CAUnavailable("built-in CA intermediate key type is not supported")
    if public_key_der(key.public_key()) != public_key_der(intermediate.public_key()):
        raise CAUnavailable("built-in CA intermediate key does not match its certificate")
    try:
        intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        raise CAUnavailable("built-in CA intermediate has no subject key identifier") from None
    return root, intermediate, key


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _load_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode("utf-8"))
    except (ValueError, UnicodeEncodeError, AttributeError):
        raise CARefused("CSR could not be parsed") from None
    try:
        valid = csr.is_signature_valid
    # A signature algorithm the library cannot check is as bad as a wrong one.
    except Exception:
        valid = False
    if not valid:
        raise CARefused("CSR signature is invalid")
    return csr


def _csr_common_name(csr: x509.CertificateSigningRequest) -> str:
    names = common_names(csr.subject)
    if len(names) != 1 or not names[0]:
        raise CARefused("CSR must have exactly one common name")
    return names[0]


def _csr_dns_names(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CARefused("CSR extensions could not be parsed") from None
    if any(not isinstance(name, x509.DNSName) for name in san):
        raise CARefused("CSR subject alternative names must be DNS names only")
    return san.get_values_for_type(x509.DNSName)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
