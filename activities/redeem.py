"""Activities of the redeem workflow: one side effect each, each idempotent.

Inputs carry ids, hashes and public material (CSR, certificate) only; secrets
never enter workflow history.
"""

# No `from __future__ import annotations` in this module: Temporal decodes its payload
# dataclasses with typing.get_type_hints on every call, and string annotations make
# that about three times dearer (docs/benchmarks.md, "What changed this round").

import base64
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.certificates import Withdrawn, run_ref
from activities.errors import domain_errors
from federation import enrollment
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


def _validated(v: enrollment.ValidatedRedeem) -> Validated:
    return Validated(
        grant_id=str(v.grant_id),
        peer_id=str(v.peer_id),
        subject_user_id=str(v.subject_user_id),
        csr_fingerprint=v.csr.fingerprint,
        public_key_der_b64=base64.b64encode(v.csr.public_key_der).decode(),
    )


class RedeemActivities:
    """Bound to a database at worker start (the CA steps are ``CertificateActivities``)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="redeem.validate")
    @domain_errors
    async def validate(self, arg: ValidateInput) -> Validated:
        async with self._sessions() as session:
            v = await enrollment.validate_redeem(
                session, arg.token_hash, arg.csr_pem, run=run_ref()
            )
        return _validated(v)

    @activity.defn(name="redeem.validate_and_claim")
    @domain_errors
    async def validate_and_claim(self, arg: ValidateInput) -> Validated:
        """``validate`` and ``claim_token`` in one step and one transaction: the redeem's
        shape since ``redeem-in-three-steps`` (workflows/redeem.py)."""
        run = run_ref()
        async with self._sessions() as session:
            v = await enrollment.validate_redeem(session, arg.token_hash, arg.csr_pem, run=run)
            await enrollment.claim_token(
                session,
                arg.token_hash,
                grant_id=v.grant_id,
                peer_id=v.peer_id,
                csr_fingerprint=v.csr.fingerprint,
                run=run,
            )
        log.info("token %s claimed", log_id(arg.token_hash))
        return _validated(v)

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
                run=run_ref(),
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

    @activity.defn(name="redeem.activate")
    @domain_errors
    async def activate(self, arg: ActivateInput) -> Withdrawn:
        """Activate, and report what this run signed besides (decided for revocation)."""
        issued_by = run_ref()
        async with self._sessions() as session:
            leftovers = await enrollment.activate(
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
            self.validate_and_claim,
            self.validate,
            self.claim_token,
            self.release_claim,
            self.burn_token,
            self.activate,
            self.record_denial,
        ]
