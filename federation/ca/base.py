"""The one interface every certificate authority provider implements.

Callers never branch on the provider kind: step-ca and the built-in CA both
embed the grant id and subject user id OIDs, and both return the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509


@dataclass(frozen=True)
class IssueRequest:
    csr_pem: str
    grant_id: str
    subject_user_id: str


@dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: str
    # Intermediate certificate(s), leaf's issuer first; never the root.
    chain_pem: str
    # Lowercase hex of the serial number, no leading "0x".
    serial: str


class CertificateAuthority(Protocol):
    """Issue, revoke and expose the trust anchor.

    ``issue`` raises ``CAUnavailable`` (retryable: connect error, timeout, 5xx)
    or ``CARefused`` (4xx, final). ``revoke`` is idempotent: revoking an
    already revoked serial succeeds.
    """

    name: str

    async def issue(self, request: IssueRequest) -> IssuedCertificate: ...

    async def revoke(self, serial: str, *, reason: str) -> None: ...

    def root_certificates(self) -> list[x509.Certificate]: ...

    async def check_health(self) -> None:
        """Raise ``CAUnavailable`` when the CA cannot serve requests."""
        ...
