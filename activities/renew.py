"""Activities of the RenewCertificate workflow (gateway B). Signing, verification and the
withdrawal of a failed run's certificates are ``CertificateActivities``."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.certificates import run_ref
from activities.errors import domain_errors
from federation import ledger, renewal


@dataclass(frozen=True)
class ValidateRenewalInput:
    grant_id: str
    presented_serial: str
    csr_pem: str


@dataclass(frozen=True)
class Replayed:
    cert_pem: str
    chain_pem: str
    serial: str
    not_after: str


@dataclass(frozen=True)
class RenewalValidated:
    grant_id: str
    peer_id: str
    subject_user_id: str
    old_serial: str
    csr_fingerprint: str
    public_key_der_b64: str
    # The same CSR renewed already: its certificate is the answer.
    replay: Replayed | None = None


@dataclass(frozen=True)
class PinInput:
    request_id: str
    grant_id: str
    peer_id: str
    old_serial: str
    cert_pem: str
    serial: str
    not_after: str
    fingerprint: str
    overlap_seconds: float


@dataclass(frozen=True)
class Pinned:
    # When the superseded certificate stops being accepted (ISO 8601).
    overlap_end: str
    # What this run signed besides the pinned one: decided for revocation.
    leftovers: list[str]


class RenewActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="renew.validate")
    @domain_errors
    async def validate(self, arg: ValidateRenewalInput) -> RenewalValidated:
        async with self._sessions() as session:
            v = await renewal.validate_renewal(
                session,
                grant_id=uuid.UUID(arg.grant_id),
                presented_serial=arg.presented_serial,
                csr_pem=arg.csr_pem,
            )
        replay = v.replay
        return RenewalValidated(
            grant_id=str(v.grant_id),
            peer_id=str(v.peer_id),
            subject_user_id=str(v.subject_user_id),
            old_serial=v.old_serial,
            csr_fingerprint=v.csr.fingerprint,
            public_key_der_b64=base64.b64encode(v.csr.public_key_der).decode(),
            replay=Replayed(
                replay.cert_pem, replay.chain_pem, replay.serial, replay.not_after.isoformat()
            )
            if replay
            else None,
        )

    @activity.defn(name="renew.pin")
    @domain_errors
    async def pin(self, arg: PinInput) -> Pinned:
        issued_by = run_ref()
        async with self._sessions() as session:
            overlap_end = await renewal.pin_renewal(
                session,
                renewal.Renewed(
                    request_id=arg.request_id,
                    grant_id=uuid.UUID(arg.grant_id),
                    peer_id=uuid.UUID(arg.peer_id),
                    old_serial=arg.old_serial,
                    cert_pem=arg.cert_pem,
                    serial=arg.serial,
                    not_after=datetime.fromisoformat(arg.not_after),
                    fingerprint=arg.fingerprint,
                    issued_by=issued_by,
                    overlap=timedelta(seconds=arg.overlap_seconds),
                ),
            )
            leftovers = await ledger.pending_revocations(session, issued_by=issued_by)
        return Pinned(overlap_end.isoformat(), leftovers)

    def all(self) -> list[Callable[..., Any]]:
        return [self.validate, self.pin]
