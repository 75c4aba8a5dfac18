"""The one interface every certificate authority provider implements.

Callers never branch on the provider kind: step-ca and the built-in CA both
embed the grant id and subject user id OIDs, and both return the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from federation.errors import CARefused
from federation.pki.fields import is_canonical_uuid

# RFC 5280: a positive serial of at most 20 octets.
_MAX_SERIAL = 2**159


@dataclass(frozen=True)
class IssueRequest:
    csr_pem: str
    grant_id: str
    subject_user_id: str
    # The serial the ledger reserved before calling the CA, so that even a lost reply
    # leaves a revocable row. Both providers honour it; None lets the CA choose.
    serial: int | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: str
    # Intermediate certificate(s), leaf's issuer first; never the root.
    chain_pem: str
    # Lowercase hex of the serial number, no leading "0x".
    serial: str


class CertificateAuthority(Protocol):
    """Issue, revoke and expose the trust anchor.

    One contract for every provider: ``issue`` and ``revoke`` raise ``CAUnavailable``
    (retryable: connect error, timeout, 5xx) or ``CARefused`` (the request itself is
    refused: bad CSR, bad ids, a 4xx; final). Nothing else escapes. ``revoke`` is
    idempotent: revoking an already revoked (or never signed) serial succeeds.
    Certificates live ``lifetime`` (the provider's configuration) and start a minute
    in the past, for peers whose clock is behind.
    """

    name: str

    async def issue(self, request: IssueRequest) -> IssuedCertificate: ...

    async def revoke(self, serial: str, *, reason: str) -> None: ...

    def root_certificates(self) -> list[x509.Certificate]: ...

    async def check_health(self) -> None:
        """Raise ``CAUnavailable`` when the CA cannot serve requests."""
        ...


def checked_id(value: object, label: str) -> str:
    """The grant or user id as it goes into the certificate, or ``CARefused``.

    The value is embedded verbatim and verification demands the canonical form, so
    anything else is refused here rather than issued as a dud.
    """
    if not is_canonical_uuid(value):
        raise CARefused(f"{label} is not a canonical lowercase UUID")
    return str(value)


def checked_serial(serial: int | None) -> int:
    """The reserved serial, or a fresh random one when none was reserved."""
    if serial is None:
        return x509.random_serial_number()
    if not 0 < serial < _MAX_SERIAL:
        raise CARefused("serial must be a positive integer of at most 159 bits")
    return serial
