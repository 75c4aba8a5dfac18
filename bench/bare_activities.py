"""Activities of the bare-Temporal baseline: same names' shape as ``activities.redeem``,
payloads of about the real size, no work. Imported passed through by the sandbox,
as the real workflow imports ``activities.redeem``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio import activity

# Payload sizes of a real redeem with a P-256 CSR and a step-ca certificate.
CSR_SIZE = 560
CERT_SIZE = 1100
CHAIN_SIZE = 700
_UUID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class BareValidated:
    grant_id: str
    peer_id: str
    subject_user_id: str
    csr_fingerprint: str
    public_key_der_b64: str


@dataclass(frozen=True)
class BareIssued:
    cert_pem: str
    chain_pem: str
    serial: str


@activity.defn(name="bare.validate")
async def validate(csr_pem: str) -> BareValidated:
    return BareValidated(_UUID, _UUID, _UUID, "f" * 64, "A" * 120)


@activity.defn(name="bare.claim_token")
async def claim_token(token_hash: str) -> None:
    return None


@activity.defn(name="bare.issue_certificate")
async def issue_certificate(csr_pem: str) -> BareIssued:
    return BareIssued("C" * CERT_SIZE, "I" * CHAIN_SIZE, "1234abcd")


@activity.defn(name="bare.verify_certificate")
async def verify_certificate(cert_pem: str) -> str:
    return "1234abcd"


@activity.defn(name="bare.activate")
async def activate(serial: str) -> None:
    return None


ACTIVITIES: list[Callable[..., Any]] = [
    validate,
    claim_token,
    issue_certificate,
    verify_certificate,
    activate,
]
