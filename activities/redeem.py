"""Activities of the redeem workflow: one side effect each, each idempotent.

Inputs carry ids, hashes and public material (CSR, certificate) only; secrets
never enter workflow history.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.certificates import run_ref
from activities.errors import domain_errors
from federation import enrollment, ledger
from federation.ca.base import CertificateAuthority, IssueRequest
from federation.pki.certs import verify_issued_certificate
from federation.tokens import log_id

log = logging.getLogger("mosaic.activities.redeem")


@dataclass(frozen=True)
class ValidateInput:
    token_hash: str
    csr_pem: str


@dataclass(frozen=True)
class Validated:
    grant_id: str
    peer_id: str
    subject_user_id: str
    csr_fingerprint: str
    # base64 of the CSR's SubjectPublicKeyInfo DER
    public_key_der_b64: str


@dataclass(frozen=True)
class ClaimInput:
    token_hash: str
    grant_id: str
    peer_id: str
    csr_fingerprint: str


@dataclass(frozen=True)
class ReleaseInput:
    token_hash: str
    csr_fingerprint: str


@dataclass(frozen=True)
class IssueInput:
    csr_pem: str
    grant_id: str
    subject_user_id: str
    peer_id: str
    csr_fingerprint: str


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    chain_pem: str
    serial: str


@dataclass(frozen=True)
class VerifyInput:
    cert_pem: str
    chain_pem: str
    grant_id: str
    subject_user_id: str
    public_key_der_b64: str


@dataclass(frozen=True)
class Verified:
    serial: str
    not_after: str  # ISO 8601, UTC
    fingerprint: str


@dataclass(frozen=True)
class WithdrawInput:
    reason: str


@dataclass(frozen=True)
class Withdrawn:
    # Serials of this run decided for revocation and not yet confirmed by the CA.
    serials: list[str]


@dataclass(frozen=True)
class ActivateInput:
    request_id: str
    token_hash: str
    grant_id: str
    peer_id: str
    cert_pem: str
    serial: str
    not_after: str
    fingerprint: str


@dataclass(frozen=True)
class DenialInput:
    request_id: str
    token_hash: str
    kind: str
    status_code: int
    reason: str
    cert_serial: str | None = None
    # One denial row per run, however often this step runs.
    idempotency_key: str | None = None


class RedeemActivities:
    """Bound to a database and a CA at worker start."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ca: CertificateAuthority
    ) -> None:
        self._sessions = sessions
        self._ca = ca

    @activity.defn(name="redeem.validate")
    @domain_errors
    async def validate(self, arg: ValidateInput) -> Validated:
        async with self._sessions() as session:
            v = await enrollment.validate_redeem(session, arg.token_hash, arg.csr_pem)
        return Validated(
            grant_id=str(v.grant_id),
            peer_id=str(v.peer_id),
            subject_user_id=str(v.subject_user_id),
            csr_fingerprint=v.csr.fingerprint,
            public_key_der_b64=base64.b64encode(v.csr.public_key_der).decode(),
        )

    @activity.defn(name="redeem.claim_token")
    @domain_errors
    async def claim_token(self, arg: ClaimInput) -> None:
        async with self._sessions() as session:
            await enrollment.claim_token(
                session,
                arg.token_hash,
                grant_id=uuid.UUID(arg.grant_id),
                peer_id=uuid.UUID(arg.peer_id),
                csr_fingerprint=arg.csr_fingerprint,
            )
        log.info("token %s claimed", log_id(arg.token_hash))

    @activity.defn(name="redeem.release_claim")
    @domain_errors
    async def release_claim(self, arg: ReleaseInput) -> bool:
        async with self._sessions() as session:
            released = await enrollment.release_claim(
                session, arg.token_hash, csr_fingerprint=arg.csr_fingerprint
            )
        log.info("token %s claim released=%s", log_id(arg.token_hash), released)
        return released

    @activity.defn(name="redeem.burn_token")
    @domain_errors
    async def burn_token(self, arg: ReleaseInput) -> None:
        async with self._sessions() as session:
            await enrollment.burn_token(
                session, arg.token_hash, csr_fingerprint=arg.csr_fingerprint
            )
        log.info("token %s burnt", log_id(arg.token_hash))

    @activity.defn(name="redeem.issue_certificate")
    @domain_errors
    async def issue_certificate(self, arg: IssueInput) -> Issued:
        """Reserve a serial in the ledger, have the CA sign, record the answer: one step."""
        issued = await ledger.sign(
            self._sessions,
            self._ca,
            IssueRequest(arg.csr_pem, arg.grant_id, arg.subject_user_id),
            grant_id=uuid.UUID(arg.grant_id),
            peer_id=uuid.UUID(arg.peer_id),
            csr_fingerprint=arg.csr_fingerprint,
            purpose="enrollment",
            issued_by=run_ref(),
        )
        log.info(
            "certificate %s issued by %s for grant %s", issued.serial, self._ca.name, arg.grant_id
        )
        return Issued(issued.cert_pem, issued.chain_pem, issued.serial)

    @activity.defn(name="redeem.verify_certificate")
    @domain_errors
    async def verify_certificate(self, arg: VerifyInput) -> Verified:
        verified = verify_issued_certificate(
            arg.cert_pem,
            arg.chain_pem,
            roots=self._ca.root_certificates(),
            expected_grant_id=arg.grant_id,
            expected_subject_user_id=arg.subject_user_id,
            expected_public_key_der=base64.b64decode(arg.public_key_der_b64),
        )
        return Verified(
            verified.serial, verified.not_after.isoformat(), verified.fingerprint_sha256
        )

    @activity.defn(name="redeem.withdraw_certificates")
    async def withdraw_certificates(self, arg: WithdrawInput) -> Withdrawn:
        """Every certificate this run had signed (or asked for) and did not pin is decided
        for revocation, in one transaction; returns what the CA still has to revoke."""
        issued_by = run_ref()
        async with self._sessions() as session:
            await ledger.decide_revocation(
                session, reason=arg.reason, issued_by=issued_by, keep_active=True
            )
            await session.commit()
            serials = await ledger.pending_revocations(session, issued_by=issued_by)
        if serials:
            log.info("withdrew %d certificate(s) of %s: %s", len(serials), issued_by, arg.reason)
        return Withdrawn(serials)

    @activity.defn(name="redeem.activate")
    @domain_errors
    async def activate(self, arg: ActivateInput) -> Withdrawn:
        """Activate, and report what this run signed besides (decided for revocation)."""
        issued_by = run_ref()
        async with self._sessions() as session:
            await enrollment.activate(
                session,
                enrollment.Activation(
                    request_id=arg.request_id,
                    token_hash=arg.token_hash,
                    grant_id=uuid.UUID(arg.grant_id),
                    peer_id=uuid.UUID(arg.peer_id),
                    cert_pem=arg.cert_pem,
                    cert_serial=arg.serial,
                    cert_not_after=datetime.fromisoformat(arg.not_after),
                    cert_fingerprint=arg.fingerprint,
                    issued_by=issued_by,
                ),
            )
            leftovers = await ledger.pending_revocations(session, issued_by=issued_by)
        log.info("grant %s active with certificate %s", arg.grant_id, arg.serial)
        return Withdrawn(leftovers)

    @activity.defn(name="redeem.record_denial")
    async def record_denial(self, arg: DenialInput) -> None:
        async with self._sessions() as session:
            grant_id, peer_id = await enrollment.lookup_token_ids(session, arg.token_hash)
            await enrollment.record_denial(
                session,
                request_id=arg.request_id,
                verb="enrollment.redeem",
                status_code=arg.status_code,
                reason=f"{arg.kind}: {arg.reason}",
                grant_id=grant_id,
                peer_id=peer_id,
                cert_serial=arg.cert_serial,
                idempotency_key=arg.idempotency_key,
            )
        log.info(
            "enrollment denied for token %s: %s %s",
            log_id(arg.token_hash),
            arg.status_code,
            arg.kind,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.validate,
            self.claim_token,
            self.release_claim,
            self.burn_token,
            self.issue_certificate,
            self.verify_certificate,
            self.withdraw_certificates,
            self.activate,
            self.record_denial,
        ]
