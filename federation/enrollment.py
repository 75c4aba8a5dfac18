"""Redeeming an enrollment token, as database operations the workflow composes.

Each function is one idempotent step; the Temporal activities wrap them. The
order and the compensations live in the workflow, the failure policy in
``federation.policy``.

The statements every redeem runs are built once, at import, on the tables (SQLAlchemy
Core) with bound parameters: an ORM statement built per call costs the client 1.7 to
3.5 times the CPU (``python -m bench.statements``; docs/benchmarks.md, "What changed
this round"). The rare paths (a lost race, a compensation) keep the ORM.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from federation import ledger
from federation.audit import audit_entry, row_values
from federation.db.models import (
    AuditEntry,
    Certificate,
    EnrollmentToken,
    Grant,
    Peer,
    UTCDateTime,
    bound_now,
    table_of,
    utcnow,
)
from federation.errors import (
    ActivationLost,
    EnrollmentInProgress,
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
GRANT_BUSY = "another enrollment of this grant is in progress; retry later"


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


# Bound parameters are never named after a column of the table an UPDATE writes:
# SQLAlchemy would add such a key to its SET clause.
_TOKENS = table_of(EnrollmentToken)
_GRANTS = table_of(Grant)
_PEERS = table_of(Peer)
_CERTIFICATES = table_of(Certificate)
_UUID = _GRANTS.c.id.type


@dataclass(frozen=True)
class _TokenState:
    """A token with what redeeming it depends on of its grant and peer (one read)."""

    token_hash: str
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    expires_at: datetime
    used_at: datetime | None
    csr_fingerprint: str | None
    cert_serial: str | None
    burnt_at: datetime | None
    grant_status: str
    grant_peer_id: uuid.UUID
    subject_user_id: uuid.UUID
    grant_cert_serial: str | None
    enrolling_token_hash: str | None
    common_name: str | None
    peer_state: str


_LOAD = (
    select(
        _TOKENS.c.token_hash,
        _TOKENS.c.grant_id,
        _TOKENS.c.peer_id,
        _TOKENS.c.expires_at,
        _TOKENS.c.used_at,
        _TOKENS.c.csr_fingerprint,
        _TOKENS.c.cert_serial,
        _TOKENS.c.burnt_at,
        _GRANTS.c.status.label("grant_status"),
        _GRANTS.c.peer_id.label("grant_peer_id"),
        _GRANTS.c.subject_user_id,
        _GRANTS.c.cert_serial.label("grant_cert_serial"),
        _GRANTS.c.enrolling_token_hash,
        _PEERS.c.common_name,
        _PEERS.c.state.label("peer_state"),
    )
    .join_from(_TOKENS, _GRANTS, _GRANTS.c.id == _TOKENS.c.grant_id)
    .join(_PEERS, _PEERS.c.id == _TOKENS.c.peer_id)
    .where(_TOKENS.c.token_hash == bindparam("hash", type_=String))
)


async def _load(session: AsyncSession, token_hash: str) -> _TokenState:
    """The token with its grant and peer, in one statement."""
    found = (await session.execute(_LOAD, {"hash": token_hash})).one_or_none()
    if found is None:  # unknown; FKs make a token without grant or peer impossible
        raise TokenNotFound(TOKEN_NOT_VALID)
    return _TokenState(**found._mapping)


_ACTIVATED_BY = select(_CERTIFICATES.c.serial).where(
    _CERTIFICATES.c.serial == bindparam("serial", type_=String),
    _CERTIFICATES.c.grant_id == bindparam("grant", type_=_UUID),
    _CERTIFICATES.c.issued_by == bindparam("run", type_=String),
    _CERTIFICATES.c.state == "active",
)


async def _activated_by(
    session: AsyncSession, token: _TokenState | EnrollmentToken, issued_by: str | None
) -> bool:
    """Whether run ``issued_by`` already activated the grant with this token: the
    certificate pinned through the token is one that run had signed."""
    if issued_by is None or token.cert_serial is None:
        return False
    found = await session.scalar(
        _ACTIVATED_BY,
        {"serial": token.cert_serial, "grant": token.grant_id, "run": issued_by},
    )
    return found is not None


def _check_token_usable(row: _TokenState | EnrollmentToken, now: datetime) -> None:
    # Same generic body for used and expired: it does not tell an attacker which.
    if row.used_at is not None:
        raise TokenUsed(TOKEN_GONE, cause="token already claimed")
    if row.expires_at <= now:
        raise TokenExpired(TOKEN_GONE, cause="token expired")


async def describe_token(session: AsyncSession, token_hash: str) -> TokenView:
    """Preflight: what the token is for, without consuming it (404/410 like redeem)."""
    t = await _load(session, token_hash)
    _check_token_usable(t, utcnow())
    if not t.common_name:
        raise PeerMismatch("peer has no registered common name")
    if t.grant_status != "pending":
        raise GrantNotPending(f"grant is {t.grant_status}, not pending")
    return TokenView(t.grant_id, t.peer_id, t.subject_user_id, t.common_name, t.expires_at)


async def validate_redeem(
    session: AsyncSession, token_hash: str, csr_pem: str, *, run: str | None = None
) -> ValidatedRedeem:
    """Every check that needs no side effect, run before the token is claimed.

    The run's steps all run in one workflow task, so a worker that dies before the task
    completes has them run again, from here. A claim this same CSR made and never finished
    is resumed, not refused: the repeated claim is then a no-op. The run ``run`` (the
    ledger's ``issued_by``) that already activated the grant with this token is resumed
    too, so its re-run ends with the certificate it pinned. A burnt token stays dead.
    """
    t = await _load(session, token_hash)
    now = utcnow()
    finished = await _activated_by(session, t, run)
    claimed = t.used_at is not None and t.cert_serial is None and t.burnt_at is None
    if not finished:  # a finished run's token was checked when the run claimed it
        if not claimed:
            _check_token_usable(t, now)
        elif t.expires_at <= now:
            raise TokenExpired(TOKEN_GONE, cause="token expired")
    if not t.common_name:  # only a requesting-side row lacks one; never redeemable
        raise PeerMismatch("peer has no registered common name")
    csr = check_csr(csr_pem, expected_common_name=t.common_name)
    if (claimed or finished) and t.csr_fingerprint != csr.fingerprint:
        raise TokenUsed(TOKEN_GONE, cause="token claimed by another CSR")
    if t.peer_id != t.grant_peer_id:  # MED-3: the token is bound to the grant's peer
        raise PeerMismatch("token is not bound to this grant's peer")
    if finished:
        if t.grant_status != "active" or t.grant_cert_serial != t.cert_serial:
            raise GrantNotPending(f"grant is {t.grant_status}, not pending")
    elif t.grant_status != "pending":
        raise GrantNotPending(f"grant is {t.grant_status}, not pending")
    if t.peer_state not in ("pending", "active"):
        raise PeerMismatch(f"peer is {t.peer_state}")
    if t.enrolling_token_hash not in (None, token_hash):
        raise EnrollmentInProgress(GRANT_BUSY, cause="grant claimed by another token")
    return ValidatedRedeem(t.grant_id, t.peer_id, t.subject_user_id, csr)


# The token, then its grant: the two halves of one claim.
_CLAIM_TOKEN = (
    update(_TOKENS)
    .where(
        _TOKENS.c.token_hash == bindparam("hash", type_=String),
        _TOKENS.c.expires_at > bound_now(),
        _TOKENS.c.peer_id == bindparam("peer", type_=_UUID),
        _TOKENS.c.cert_serial.is_(None),
        _TOKENS.c.burnt_at.is_(None),
        or_(
            _TOKENS.c.used_at.is_(None),
            _TOKENS.c.csr_fingerprint == bindparam("csr", type_=String),
        ),
    )
    .values(used_at=bound_now(), csr_fingerprint=bindparam("csr", type_=String))
)
_CLAIM_GRANT = (
    update(_GRANTS)
    .where(
        _GRANTS.c.id == bindparam("grant", type_=_UUID),
        _GRANTS.c.status == "pending",
        or_(
            _GRANTS.c.enrolling_token_hash.is_(None),
            _GRANTS.c.enrolling_token_hash == bindparam("hash", type_=String),
        ),
    )
    .values(enrolling_token_hash=bindparam("hash", type_=String), updated_at=bound_now())
)


async def claim_token(
    session: AsyncSession,
    token_hash: str,
    *,
    grant_id: uuid.UUID,
    peer_id: uuid.UUID,
    csr_fingerprint: str,
    run: str | None = None,
) -> None:
    """Claim the token and its grant atomically: exactly one caller wins either.

    The grant-level claim means a second token of the same grant, redeemed at the same
    time, is refused here, before any CA is called. Re-claiming with the same CSR is a
    no-op that refreshes the claim's time, so reconcile's grace period counts from the
    last time a live run touched it, not from the first claim. So is the claim re-run by
    the run ``run`` that already activated the grant with this token.
    """
    now = utcnow()
    claimed = await session.execute(
        _CLAIM_TOKEN, {"hash": token_hash, "peer": peer_id, "csr": csr_fingerprint, "now": now}
    )
    if claimed.rowcount == 1:  # type: ignore[attr-defined]
        held = await session.execute(
            _CLAIM_GRANT, {"grant": grant_id, "hash": token_hash, "now": now}
        )
        if held.rowcount == 1:  # type: ignore[attr-defined]
            await session.commit()
            return
        await session.rollback()  # the token claim goes too: nothing changed
        grant = await session.get(Grant, grant_id, populate_existing=True)
        if grant is None or grant.status != "pending":
            raise GrantNotPending("grant is no longer pending")
        raise EnrollmentInProgress(GRANT_BUSY, cause="grant claimed by another token")
    await session.rollback()
    row = await session.get(EnrollmentToken, token_hash, populate_existing=True)
    if row is None:
        raise TokenNotFound(TOKEN_NOT_VALID)
    if row.peer_id != peer_id:
        raise PeerMismatch("token is not bound to this grant's peer")
    if row.csr_fingerprint == csr_fingerprint and await _activated_by(session, row, run):
        return
    _check_token_usable(row, now)
    raise TokenUsed(TOKEN_GONE, cause="claim lost")


async def release_claim(session: AsyncSession, token_hash: str, *, csr_fingerprint: str) -> bool:
    """Undo our claim so the token can be redeemed again, if it is still within its TTL.

    The grant-level claim is released either way. Returns False when the token was not
    released (expired, or not claimed by this CSR).
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
    await release_grant_claims(session, [token_hash])
    await session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def burn_token(session: AsyncSession, token_hash: str, *, csr_fingerprint: str) -> None:
    """Keep our claim for good (the policy burns the token): reconcile must not release it.

    The grant stays pending, so its grant-level claim is released for a new token.
    """
    await session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == token_hash,
            EnrollmentToken.csr_fingerprint == csr_fingerprint,
            EnrollmentToken.burnt_at.is_(None),
        )
        .values(burnt_at=utcnow())
    )
    await release_grant_claims(session, [token_hash])
    await session.commit()


async def release_grant_claims(session: AsyncSession, token_hashes: list[str]) -> None:
    """Clear the grant-level claim these tokens hold (no commit: part of the caller's)."""
    if token_hashes:
        await session.execute(
            update(Grant)
            .where(Grant.enrolling_token_hash.in_(token_hashes))
            .values(enrolling_token_hash=None)
        )


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
    # The run that issued it: its other certificates (a retry after a lost CA reply
    # signed a second one) are withdrawn in the same transaction.
    issued_by: str


_ACTIVATE_GRANT = (
    update(_GRANTS)
    .where(_GRANTS.c.id == bindparam("grant", type_=_UUID), _GRANTS.c.status == "pending")
    .values(
        status="active",
        activated_at=bound_now(),
        cert_serial=bindparam("serial", type_=String),
        cert_not_after=bindparam("not_after", type_=UTCDateTime()),
        enrolling_token_hash=None,
        updated_at=bound_now(),
    )
)
_ACTIVE_SERIAL = select(_GRANTS.c.cert_serial).where(
    _GRANTS.c.id == bindparam("grant", type_=_UUID), _GRANTS.c.status == "active"
)
_ACTIVATE_PEER = (
    update(_PEERS)
    .where(
        _PEERS.c.id == bindparam("peer", type_=_UUID),
        _PEERS.c.state.in_(("pending", "active")),
    )
    .values(
        state="active",
        cert_pem=bindparam("pem", type_=String),
        cert_serial=bindparam("serial", type_=String),
        cert_not_after=bindparam("not_after", type_=UTCDateTime()),
        cert_fingerprint=bindparam("fingerprint", type_=String),
        failure_reason=None,
        updated_at=bound_now(),
    )
)
_TOKEN_USED_FOR = (
    update(_TOKENS)
    .where(_TOKENS.c.token_hash == bindparam("hash", type_=String))
    .values(cert_serial=bindparam("serial", type_=String))
)
_AUDIT = insert(table_of(AuditEntry))
SUPERFLUOUS = "superfluous: another certificate of the same enrollment was activated"


async def activate(session: AsyncSession, a: Activation) -> list[str]:
    """Grant and peer to ``active`` with the allowed audit row, in one transaction (CRIT-2).

    Returns the serials the run signed besides, decided for revocation and not yet
    confirmed by the CA (read in the same transaction: no second round of BEGIN and
    ROLLBACK on the redeem's path).

    Idempotent: a retry after a commit whose reply was lost finds the grant
    already active with this serial and succeeds.
    """
    now = utcnow()
    cert = {"serial": a.cert_serial, "not_after": a.cert_not_after, "now": now}
    async with session.begin():
        granted = await session.execute(_ACTIVATE_GRANT, {**cert, "grant": a.grant_id})
        if granted.rowcount != 1:  # type: ignore[attr-defined]
            current = await session.scalar(_ACTIVE_SERIAL, {"grant": a.grant_id})
            if current == a.cert_serial:
                return await _leftovers(session, a)
            raise ActivationLost("grant is no longer pending")
        if not await ledger.pin(session, a.cert_serial):
            raise ActivationLost("certificate was withdrawn before activation")
        await ledger.decide_revocation(
            session,
            reason=SUPERFLUOUS,
            grant_id=a.grant_id,
            issued_by=a.issued_by,
            keep_active=True,
        )
        peered = await session.execute(
            _ACTIVATE_PEER,
            {**cert, "peer": a.peer_id, "pem": a.cert_pem, "fingerprint": a.cert_fingerprint},
        )
        if peered.rowcount != 1:  # type: ignore[attr-defined]
            raise ActivationLost("peer is no longer pending or active")
        await session.execute(_TOKEN_USED_FOR, {"hash": a.token_hash, "serial": a.cert_serial})
        await session.execute(
            _AUDIT,
            row_values(
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
            ),
        )
        return await _leftovers(session, a)


async def _leftovers(session: AsyncSession, a: Activation) -> list[str]:
    return await ledger.pending_revocations(session, grant_id=a.grant_id, issued_by=a.issued_by)


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
    client_address: str | None = None,
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
            client_address=client_address,
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


@dataclass(frozen=True)
class TokenRef:
    """Whose a known token is, for the API's own checks and audit rows (no secret in it)."""

    grant_id: uuid.UUID
    peer_id: uuid.UUID
    # The CN a CSR for this token must carry (None: a requesting-side row, never redeemable).
    peer_common_name: str | None


_LOOKUP = (
    select(_TOKENS.c.grant_id, _TOKENS.c.peer_id, _PEERS.c.common_name)
    .outerjoin_from(_TOKENS, _PEERS, _PEERS.c.id == _TOKENS.c.peer_id)
    .where(_TOKENS.c.token_hash == bindparam("hash", type_=String))
)


async def lookup_token(session: AsyncSession, token_hash: str) -> TokenRef | None:
    """The grant and peer behind a token, or None when nobody knows it."""
    found = (await session.execute(_LOOKUP, {"hash": token_hash})).one_or_none()
    if found is None:
        return None
    grant_id, peer_id, common_name = found
    return TokenRef(grant_id, peer_id, common_name)


_USABLE = (
    select(_GRANTS.c.status, _CERTIFICATES.c.serial)
    .outerjoin_from(
        _GRANTS,
        _CERTIFICATES,
        and_(
            _CERTIFICATES.c.grant_id == _GRANTS.c.id,
            _CERTIFICATES.c.serial == bindparam("serial", type_=String),
            ledger.usable_at(bound_now()),
        ),
    )
    .where(_GRANTS.c.id == bindparam("grant", type_=_UUID))
)


async def why_certificate_unusable(
    session: AsyncSession, grant_id: uuid.UUID, serial: str
) -> str | None:
    """Why a finished redeem's certificate may no longer be handed out (the grant was
    revoked or expired, the certificate replaced or withdrawn), or None while the ledger
    still counts it as the grant's usable one."""
    found = (
        await session.execute(_USABLE, {"grant": grant_id, "serial": serial, "now": utcnow()})
    ).one_or_none()
    if found is None:
        return "grant deleted"
    status, usable = found
    if status != "active":
        return f"grant {status}"
    if usable is None:
        return "certificate replaced or revoked"
    return None
