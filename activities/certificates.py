"""Activities on the certificate ledger (gateway B) that enrollment and renewal share:
sign (serial reserved first, answer recorded before returning), verify, withdraw what a
run signed, and carry a revocation to the CA.

The CA revocation only revokes what the ledger already decided to revoke: the decision
is taken in a database transaction by whoever owns it (a failed redeem, a grant revoke,
a renewal's overlap, the reconcile sweep); this step carries it to the CA.
"""

# No `from __future__ import annotations` in this module: Temporal decodes its payload
# dataclasses with typing.get_type_hints on every call, and string annotations make
# that about three times dearer (docs/benchmarks.md, "What changed this round").

import base64
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import domain_errors
from federation import ledger
from federation.ca.base import CertificateAuthority, IssueRequest
from federation.errors import CARefused, CertificateRejected
from federation.pki.certs import verify_issued_certificate

log = logging.getLogger("mosaic.activities.certificates")


@dataclass(frozen=True)
class SignInput:
    csr_pem: str
    grant_id: str
    subject_user_id: str
    peer_id: str
    csr_fingerprint: str
    # "enrollment" (the grant must be pending) or "renewal" (it must be active).
    purpose: str = "enrollment"


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
    # base64 of the CSR's SubjectPublicKeyInfo DER: the certificate must carry it.
    public_key_der_b64: str


@dataclass(frozen=True)
class Verified:
    serial: str
    not_after: str  # ISO 8601, UTC
    fingerprint: str


@dataclass(frozen=True)
class CertifyInput:
    """``SignInput`` and the CSR's key: sign, then verify, in one step."""

    csr_pem: str
    grant_id: str
    subject_user_id: str
    peer_id: str
    csr_fingerprint: str
    # base64 of the CSR's SubjectPublicKeyInfo DER: the certificate must carry it.
    public_key_der_b64: str


@dataclass(frozen=True)
class Certified:
    cert_pem: str
    chain_pem: str
    serial: str
    not_after: str  # ISO 8601, UTC
    fingerprint: str


@dataclass(frozen=True)
class WithdrawInput:
    reason: str


@dataclass(frozen=True)
class Withdrawn:
    # Serials of the run decided for revocation and not yet confirmed by the CA.
    serials: list[str]


_GRANT_STATES = {"enrollment": ("pending",), "renewal": ("active",)}


@dataclass(frozen=True)
class CARevocation:
    serial: str
    reason: str


@dataclass(frozen=True)
class CARevoked:
    serial: str
    # False when the CA refused (a 4xx): the row stays decided and reconcile retries it.
    confirmed: bool
    refusal: str | None = None


def run_ref() -> str:
    """The run an activity works for, as the ledger records it (``issued_by``)."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}"


class CertificateActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ca: CertificateAuthority
    ) -> None:
        self._sessions = sessions
        self._ca = ca

    @activity.defn(name="certificates.certify")
    @domain_errors
    async def certify(self, arg: CertifyInput) -> Certified:
        """``sign`` then ``verify``, one step: the redeem's CA step since
        ``redeem-in-three-steps`` (workflows/redeem.py). A certificate that fails the
        checks fails the step (``CertificateRejected``); the ledger has it as this run's,
        so the run's compensation withdraws it."""
        request = SignInput(
            arg.csr_pem, arg.grant_id, arg.subject_user_id, arg.peer_id, arg.csr_fingerprint
        )
        issued = await self._sign(request)
        checks = VerifyInput(
            issued.cert_pem,
            issued.chain_pem,
            arg.grant_id,
            arg.subject_user_id,
            arg.public_key_der_b64,
        )
        try:
            verified = self._verify(checks)
        except CertificateRejected as rejected:
            # The serial goes with the refusal: the run's denied audit row names it.
            raise ApplicationError(
                rejected.message, issued.serial, type=rejected.kind, non_retryable=True
            ) from None
        return Certified(
            issued.cert_pem,
            issued.chain_pem,
            verified.serial,
            verified.not_after,
            verified.fingerprint,
        )

    @activity.defn(name="certificates.sign")
    @domain_errors
    async def sign(self, arg: SignInput) -> Issued:
        return await self._sign(arg)

    async def _sign(self, arg: SignInput) -> Issued:
        """Reserve a serial in the ledger, have the CA sign, record the answer: one step."""
        issued = await ledger.sign(
            self._sessions,
            self._ca,
            IssueRequest(arg.csr_pem, arg.grant_id, arg.subject_user_id),
            grant_id=uuid.UUID(arg.grant_id),
            peer_id=uuid.UUID(arg.peer_id),
            csr_fingerprint=arg.csr_fingerprint,
            purpose=arg.purpose,
            issued_by=run_ref(),
            grant_states=_GRANT_STATES[arg.purpose],
        )
        log.info(
            "certificate %s (%s) signed by %s for grant %s",
            issued.serial,
            arg.purpose,
            self._ca.name,
            arg.grant_id,
        )
        return Issued(issued.cert_pem, issued.chain_pem, issued.serial)

    @activity.defn(name="certificates.verify")
    @domain_errors
    async def verify(self, arg: VerifyInput) -> Verified:
        return self._verify(arg)

    def _verify(self, arg: VerifyInput) -> Verified:
        """Both OIDs are the grant's, the key is the CSR's, the chain reaches our root."""
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

    @activity.defn(name="certificates.withdraw_run")
    async def withdraw_run(self, arg: WithdrawInput) -> Withdrawn:
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

    @activity.defn(name="certificates.revoke_at_ca")
    @domain_errors
    async def revoke_at_ca(self, arg: CARevocation) -> CARevoked:
        """Revoke one decided serial at the CA, then mark it ``revoked`` in the ledger.

        An unreachable CA raises (retried); a refusing CA is reported, not raised, so a
        caller revoking several certificates goes on with the others.
        """
        try:
            await ledger.revoke_at_ca(self._sessions, self._ca, arg.serial, arg.reason)
        except CARefused as refused:
            log.warning(
                "CA refused to revoke %s: %s (%s); reconcile will retry",
                arg.serial,
                refused.message,
                refused.cause,
            )
            return CARevoked(arg.serial, False, refused.message)
        log.info("certificate %s revoked at the CA: %s", arg.serial, arg.reason)
        return CARevoked(arg.serial, True)

    def all(self) -> list[Callable[..., Any]]:
        return [self.certify, self.sign, self.verify, self.withdraw_run, self.revoke_at_ca]
