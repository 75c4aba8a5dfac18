"""Redeeming an enrollment token, as database operations the workflow composes.

Each function is one idempotent step; the Temporal activities wrap them. The
order and the compensations live in the workflow, the failure policy in
``federation.policy``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.db.models import EnrollmentToken, Grant, Peer, utcnow
from federation.errors import (
    ActivationLost,
    GrantNotPending,
    PeerMismatch,
    TokenExpired,
    TokenNotFound,
    TokenUsed,
)
from federation.pki.csr import CheckedCSR, check_csr

# Generic bodies: they do not reveal whether a grant exists behind a token.
TOKEN_NOT_VALID = "enrollment token is not valid"  # noqa: S105 - a message, not a secret
TOKEN_GONE = "enrollment token has expired or was already used"  # noqa: S105


@dataclass(frozen=True)
class TokenView:
    """What a token unlocks, for the remote's preflight (no secret in it)."""

    grant_id: uuid.UUID
    peer_id: uuid.UUID
    subject_user_id: uuid.UUID
    peer_common_name: str
    expires_at: datetime


@dataclass(frozen=True)
class ValidatedRedeem:
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    subject_user_id: uuid.UUID
    csr: CheckedCSR


async def _load(session: AsyncSession, token_hash: str) -> tuple[EnrollmentToken, Grant, Peer]:
    row = await session.get(EnrollmentToken, token_hash)
    if row is None:
        raise TokenNotFound(TOKEN_NOT_VALID)
    grant = await session.get(Grant, row.grant_id)
    peer = await session.get(Peer, row.peer_id)
    if grant is None or peer is None:  # FKs make this impossible; fail closed anyway
        raise TokenNotFound(TOKEN_NOT_VALID)
    return row, grant, peer


def _check_token_usable(row: EnrollmentToken, now: datetime) -> None:
    # Same generic body for used and expired: it does not tell an attacker which.
    if row.used_at is not None:
        raise TokenUsed(TOKEN_GONE, cause="token already claimed")
    if row.expires_at <= now:
        raise TokenExpired(TOKEN_GONE, cause="token expired")


async def describe_token(session: AsyncSession, token_hash: str) -> TokenView:
    """Preflight: what the token is for, without consuming it (404/410 like redeem)."""
    row, grant, peer = await _load(session, token_hash)
    _check_token_usable(row, utcnow())
    if not peer.common_name:
        raise PeerMismatch("peer has no registered common name")
    if grant.status != "pending":
        raise GrantNotPending(f"grant is {grant.status}, not pending")
    return TokenView(grant.id, peer.id, grant.subject_user_id, peer.common_name, row.expires_at)


async def validate_redeem(session: AsyncSession, token_hash: str, csr_pem: str) -> ValidatedRedeem:
    """Every check that needs no side effect, run before the token is claimed.

    A claim this same CSR made and never finished (a worker died between the
    claim and the end of its workflow task, so the step runs again) is resumed,
    not refused: the repeated claim is then a no-op. A burnt token stays dead.
    """
    row, grant, peer = await _load(session, token_hash)
    now = utcnow()
    resuming = row.used_at is not None and row.cert_serial is None and row.burnt_at is None
    if not resuming:
        _check_token_usable(row, now)
    elif row.expires_at <= now:
        raise TokenExpired(TOKEN_GONE, cause="token expired")
    if not peer.common_name:  # only a requesting-side row lacks one; never redeemable
        raise PeerMismatch("peer has no registered common name")
    csr = check_csr(csr_pem, expected_common_name=peer.common_name)
    if resuming and row.csr_fingerprint != csr.fingerprint:
        raise TokenUsed(TOKEN_GONE, cause="token claimed by another CSR")
    if row.peer_id != grant.peer_id:  # MED-3: the token is bound to the grant's peer
        raise PeerMismatch("token is not bound to this grant's peer")
    if grant.status != "pending":
        raise GrantNotPending(f"grant is {grant.status}, not pending")
    if peer.state not in ("pending", "active"):
        raise PeerMismatch(f"peer is {peer.state}")
    return ValidatedRedeem(grant.id, peer.id, grant.subject_user_id, csr)


async def claim_token(
    session: AsyncSession, token_hash: str, *, peer_id: uuid.UUID, csr_fingerprint: str
) -> None:
    """Claim atomically: exactly one caller wins. Re-claiming with the same CSR is a no-op."""
    now = utcnow()
    result = await session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == token_hash,
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.expires_at > now,
            EnrollmentToken.peer_id == peer_id,
        )
        .values(used_at=now, csr_fingerprint=csr_fingerprint)
    )
    await session.commit()
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return
    row = await session.get(EnrollmentToken, token_hash, populate_existing=True)
    if row is None:
        raise TokenNotFound(TOKEN_NOT_VALID)
    if row.used_at is not None and row.csr_fingerprint == csr_fingerprint:
        return  # our own earlier claim (an activity retry after a lost reply)
    if row.peer_id != peer_id:
        raise PeerMismatch("token is not bound to this grant's peer")
    _check_token_usable(row, now)
    raise TokenUsed(TOKEN_GONE, cause="claim lost")


async def release_claim(session: AsyncSession, token_hash: str, *, csr_fingerprint: str) -> bool:
    """Undo our claim so the token can be redeemed again, if it is still within its TTL.

    Returns False when nothing was released (expired, or not claimed by this CSR).
    """
    result = await session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == token_hash,
            EnrollmentToken.csr_fingerprint == csr_fingerprint,
            EnrollmentToken.cert_serial.is_(None),
            EnrollmentToken.expires_at > utcnow(),
        )
        .values(used_at=None, csr_fingerprint=None)
    )
    await session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def burn_token(session: AsyncSession, token_hash: str, *, csr_fingerprint: str) -> None:
    """Keep our claim for good (the policy burns the token): reconcile must not release it."""
    await session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == token_hash,
            EnrollmentToken.csr_fingerprint == csr_fingerprint,
            EnrollmentToken.burnt_at.is_(None),
        )
        .values(burnt_at=utcnow())
    )
    await session.commit()


@dataclass(frozen=True)
class Activation:
    request_id: str
    token_hash: str
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    cert_pem: str
    cert_serial: str
    cert_not_after: datetime
    cert_fingerprint: str


async def activate(session: AsyncSession, a: Activation) -> None:
    """Grant and peer to ``active`` with the allowed audit row, in one transaction (CRIT-2).

    Idempotent: a retry after a commit whose reply was lost finds the grant
    already active with this serial and succeeds.
    """
    now = utcnow()
    async with session.begin():
        granted = await session.execute(
            update(Grant)
            .where(Grant.id == a.grant_id, Grant.status == "pending")
            .values(
                status="active",
                activated_at=now,
                cert_serial=a.cert_serial,
                cert_not_after=a.cert_not_after,
                updated_at=now,
            )
        )
        if granted.rowcount != 1:  # type: ignore[attr-defined]
            current = await session.scalar(
                select(Grant.cert_serial).where(Grant.id == a.grant_id, Grant.status == "active")
            )
            if current == a.cert_serial:
                return
            raise ActivationLost("grant is no longer pending")
        peered = await session.execute(
            update(Peer)
            .where(Peer.id == a.peer_id, Peer.state.in_(("pending", "active")))
            .values(
                state="active",
                cert_pem=a.cert_pem,
                cert_serial=a.cert_serial,
                cert_not_after=a.cert_not_after,
                cert_fingerprint=a.cert_fingerprint,
                failure_reason=None,
                updated_at=now,
            )
        )
        if peered.rowcount != 1:  # type: ignore[attr-defined]
            raise ActivationLost("peer is no longer pending or active")
        await session.execute(
            update(EnrollmentToken)
            .where(EnrollmentToken.token_hash == a.token_hash)
            .values(cert_serial=a.cert_serial)
        )
        session.add(
            audit_entry(
                request_id=a.request_id,
                actor=f"peer:{a.peer_id}",
                verb="enrollment.redeem",
                resource="federation_grant",
                outcome="allowed",
                status_code=200,
                grant_id=a.grant_id,
                peer_id=a.peer_id,
                cert_serial=a.cert_serial,
            )
        )


async def record_denial(
    session: AsyncSession,
    *,
    request_id: str,
    verb: str,
    status_code: int,
    reason: str,
    grant_id: uuid.UUID | None = None,
    peer_id: uuid.UUID | None = None,
    cert_serial: str | None = None,
    actor: str = "anonymous",
    idempotency_key: str | None = None,
) -> None:
    """Write the ``denied`` audit row of a refused enrollment (null FKs where unknown).

    With an ``idempotency_key`` a repeated call (a retried step) writes nothing more.
    """
    session.add(
        audit_entry(
            request_id=request_id,
            actor=actor,
            verb=verb,
            resource="federation_grant",
            outcome="denied",
            status_code=status_code,
            reason=reason,
            grant_id=grant_id,
            peer_id=peer_id,
            cert_serial=cert_serial,
            idempotency_key=idempotency_key,
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        if idempotency_key is None:
            raise
        await session.rollback()  # this step already wrote its row


async def lookup_token_ids(
    session: AsyncSession, token_hash: str
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(grant id, peer id) of a token, or (None, None) when unknown: for audit rows."""
    row = await session.get(EnrollmentToken, token_hash)
    return (row.grant_id, row.peer_id) if row else (None, None)
