"""The certificate ledger (gateway B): every certificate the CA was asked to sign for a grant.

It is the one source of truth for which serial is usable: the one pinned on its grant
(state ``active``; a ``superseded`` one until its overlap ends). Every other row is, or
will be, revoked at the CA:

- the serial is reserved (``requested``) before the CA is called, so a lost reply still
  leaves a revocable row; the reply makes it ``issued``;
- a decision to revoke sets ``revoke_after`` (now, or the end of an overlap window);
  whoever acts on it (the saga, a revocation run, the reconcile sweep) revokes at the CA
  and only then marks the row ``revoked``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import String, and_, bindparam, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Insert, Select, Update
from sqlalchemy.sql.elements import ColumnElement

from federation.ca.base import CertificateAuthority, IssuedCertificate, IssueRequest
from federation.db.models import Certificate, Grant, UTCDateTime, bound_now, table_of, utcnow
from federation.errors import ActivationLost, Conflict
from federation.pki.certs import cert_not_after, load_certificate, serial_hex
from federation.pki.fingerprints import fingerprint_sha256

# A certificate in these states may still be valid at the CA.
UNREVOKED = ("requested", "issued", "active", "superseded")

# The statements of the redeem path are built once with bound parameters, on the table
# (see federation/enrollment.py). A parameter of an UPDATE is never named after a column
# of the table it writes: SQLAlchemy would add that key to its SET clause.
_ROWS = table_of(Certificate)
_GRANTS = table_of(Grant)
_UUID = _GRANTS.c.id.type


def new_serial() -> int:
    """A fresh random serial (159 bits, positive), as the ledger reserves it."""
    return x509.random_serial_number()


def serial_text(serial: int) -> str:
    """How serials are stored and shown: lowercase hex, no prefix."""
    return format(serial, "x")


@dataclass(frozen=True)
class Reservation:
    serial: str
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    csr_fingerprint: str
    purpose: str
    issued_by: str


async def sign(
    sessions: async_sessionmaker[AsyncSession],
    ca: CertificateAuthority,
    request: IssueRequest,
    *,
    grant_id: uuid.UUID,
    peer_id: uuid.UUID,
    csr_fingerprint: str,
    purpose: str,
    issued_by: str,
    grant_states: tuple[str, ...] = ("pending",),
) -> IssuedCertificate:
    """Have the CA sign with a serial the ledger reserved first; the answer is on the books
    before this returns. Every call reserves a fresh serial (a retry after a lost reply
    must not sign a second certificate under the first one's serial).

    A run asks once: when ``issued_by`` already has a certificate on the books for this
    grant and CSR, signed and not withdrawn, that one is the answer and the CA is not
    called. That is the step re-run after a worker died before its result was recorded
    (an enrollment signs inside its one workflow task), even after the run pinned it.
    """
    reservation = Reservation(
        serial=serial_text(new_serial()),
        grant_id=grant_id,
        peer_id=peer_id,
        csr_fingerprint=csr_fingerprint,
        purpose=purpose,
        issued_by=issued_by,
    )
    async with sessions() as session:
        earlier = await signed_for_run(
            session,
            grant_id=grant_id,
            issued_by=issued_by,
            csr_fingerprint=csr_fingerprint,
            purpose=purpose,
        )
        if earlier is not None:
            return earlier
        await reserve(session, reservation, grant_states=grant_states)
    issued = await ca.issue(replace(request, serial=int(reservation.serial, 16)))
    async with sessions() as session:
        serial = await record_issued(session, reservation, issued.cert_pem, issued.chain_pem)
    return replace(issued, serial=serial)


async def signed_for_run(
    session: AsyncSession,
    *,
    grant_id: uuid.UUID,
    issued_by: str,
    csr_fingerprint: str,
    purpose: str,
) -> IssuedCertificate | None:
    """The certificate ``issued_by`` already had signed for this grant and CSR, if any is
    still usable (``issued`` or pinned ``active``, never decided for revocation)."""
    row = (
        await session.execute(
            _SIGNED_FOR_RUN,
            {
                "grant": grant_id,
                "run": issued_by,
                "csr": csr_fingerprint,
                "purpose": purpose,
            },
        )
    ).first()
    if row is None:
        return None
    cert_pem, chain_pem, serial = row
    return IssuedCertificate(cert_pem, chain_pem or "", serial)


_SIGNED_FOR_RUN = (
    select(_ROWS.c.cert_pem, _ROWS.c.chain_pem, _ROWS.c.serial)
    .where(
        _ROWS.c.grant_id == bindparam("grant", type_=_UUID),
        _ROWS.c.issued_by == bindparam("run", type_=String),
        _ROWS.c.csr_fingerprint == bindparam("csr", type_=String),
        _ROWS.c.purpose == bindparam("purpose", type_=String),
        _ROWS.c.state.in_(("issued", "active")),
        _ROWS.c.revoke_after.is_(None),
        _ROWS.c.cert_pem.is_not(None),
    )
    .order_by(_ROWS.c.created_at.desc())
    .limit(1)
)


@cache
def _reserve_statement(grant_states: tuple[str, ...]) -> Insert:
    """INSERT … SELECT from the grant row, locked, only while it is in ``grant_states``."""
    grant = (
        select(
            bindparam("serial", type_=String),
            _GRANTS.c.id,
            bindparam("peer", type_=_UUID),
            literal("requested"),
            bindparam("purpose", type_=String),
            bindparam("csr", type_=String),
            bindparam("run", type_=String),
            bound_now(),
            bound_now(),
        )
        .where(
            _GRANTS.c.id == bindparam("grant", type_=_UUID),
            _GRANTS.c.status.in_(grant_states),
        )
        .with_for_update()
    )
    columns = (
        "serial",
        "grant_id",
        "peer_id",
        "state",
        "purpose",
        "csr_fingerprint",
        "issued_by",
        "created_at",
        "updated_at",
    )
    return insert(_ROWS).from_select(columns, grant)


async def reserve(
    session: AsyncSession, r: Reservation, *, grant_states: tuple[str, ...] = ("pending",)
) -> None:
    """Record the intent to sign (``requested``) and commit, before the CA is called.

    Only while the grant is in one of ``grant_states`` (``pending`` for an enrollment,
    ``active`` for a renewal), checked by the insert itself with the grant row locked:
    a revocation either sees this row and decides it, or comes first and this refuses.
    """
    done = await session.execute(
        _reserve_statement(grant_states),
        {
            "serial": r.serial,
            "peer": r.peer_id,
            "purpose": r.purpose,
            "csr": r.csr_fingerprint,
            "run": r.issued_by,
            "now": utcnow(),
            "grant": r.grant_id,
        },
    )
    await session.commit()
    if done.rowcount != 1:  # type: ignore[attr-defined]
        # The same outcome as losing the activation race (409), before anything is signed.
        raise ActivationLost("grant is no longer " + " or ".join(grant_states))


async def record_issued(
    session: AsyncSession, r: Reservation, cert_pem: str, chain_pem: str = ""
) -> str:
    """The CA's answer: the row becomes ``issued`` with the certificate; returns its serial.

    A CA that ignored the reserved serial (a template without ``serialNumber``) still
    gets its certificate on the books, as a row of its own; the reserved row stays
    ``requested`` and is revoked with the run's other leftovers.
    """
    cert = load_certificate(cert_pem)
    serial = serial_hex(cert)
    values = {
        "state": "issued",
        "cert_pem": cert_pem,
        "chain_pem": chain_pem,
        "fingerprint": fingerprint_sha256(cert.public_bytes(Encoding.DER)),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert_not_after(cert),
    }
    if serial != r.serial:
        existing = await session.get(Certificate, serial)
        if existing is None:
            session.add(
                Certificate(
                    serial=serial,
                    grant_id=r.grant_id,
                    peer_id=r.peer_id,
                    purpose=r.purpose,
                    csr_fingerprint=r.csr_fingerprint,
                    issued_by=r.issued_by,
                    **values,
                )
            )
            await session.commit()
            return serial
    # Never undo a decision taken meanwhile: only the certificate's facts are written.
    await session.execute(
        _RECORD_ISSUED,
        {
            "reserved": serial,
            "pem": cert_pem,
            "chain": chain_pem,
            "der_fingerprint": values["fingerprint"],
            "valid_from": values["not_before"],
            "valid_until": values["not_after"],
            "now": utcnow(),
        },
    )
    await session.commit()
    return serial


_RECORD_ISSUED = (
    update(_ROWS)
    .where(
        _ROWS.c.serial == bindparam("reserved", type_=String),
        _ROWS.c.state.in_(("requested", "issued")),
    )
    .values(
        state="issued",
        cert_pem=bindparam("pem", type_=String),
        chain_pem=bindparam("chain", type_=String),
        fingerprint=bindparam("der_fingerprint", type_=String),
        not_before=bindparam("valid_from", type_=UTCDateTime()),
        not_after=bindparam("valid_until", type_=UTCDateTime()),
        updated_at=bound_now(),
    )
)


async def decide_revocation(
    session: AsyncSession,
    *,
    reason: str,
    after: datetime | None = None,
    serials: Sequence[str] | None = None,
    grant_id: uuid.UUID | None = None,
    issued_by: str | None = None,
    keep_active: bool = False,
) -> list[str]:
    """Mark rows to be revoked at the CA at ``after`` (default now); returns their serials.

    Rows are selected by serial, by grant, or by the run that issued them; rows already
    revoked or already decided are left as they are. With ``keep_active`` the pinned
    certificate is spared (a failed run must not touch the grant's usable certificate).
    Does not commit: callers make it part of their own transaction.
    """
    rows = await session.execute(
        _decide_statement(
            serials is not None, grant_id is not None, issued_by is not None, keep_active
        ),
        {
            "serials": list(serials or ()),
            "of_grant": grant_id,
            "of_run": issued_by,
            "after": after or utcnow(),
            "reason": reason[:200],
            "now": utcnow(),
        },
    )
    return [serial for (serial,) in rows]


@cache
def _decide_statement(by_serials: bool, by_grant: bool, by_run: bool, keep_active: bool) -> Update:
    """decide_revocation's UPDATE for one combination of filters, built once."""
    conditions: list[ColumnElement[bool]] = [
        _ROWS.c.state.in_(UNREVOKED),
        _ROWS.c.revoke_after.is_(None),
    ]
    if by_serials:
        conditions.append(_ROWS.c.serial.in_(bindparam("serials", expanding=True, type_=String)))
    if by_grant:
        conditions.append(_ROWS.c.grant_id == bindparam("of_grant", type_=_UUID))
    if by_run:
        conditions.append(_ROWS.c.issued_by == bindparam("of_run", type_=String))
    if keep_active:
        conditions.append(_ROWS.c.state != "active")
    return (
        update(_ROWS)
        .where(*conditions)
        .values(
            revoke_after=bindparam("after", type_=UTCDateTime()),
            revocation_reason=bindparam("reason", type_=String),
            updated_at=bound_now(),
        )
        .returning(_ROWS.c.serial)
    )


async def pending_revocations(
    session: AsyncSession,
    *,
    grant_id: uuid.UUID | None = None,
    issued_by: str | None = None,
    due_by: datetime | None = None,
    limit: int = 2000,
) -> list[str]:
    """Serials decided for revocation and not yet confirmed by the CA."""
    query = _pending_statement(grant_id is not None, issued_by is not None, due_by is not None)
    params = {"grant": grant_id, "run": issued_by, "due_by": due_by, "limit": limit}
    return list(await session.scalars(query, params))


@cache
def _pending_statement(by_grant: bool, by_run: bool, by_due: bool) -> Select[tuple[str]]:
    """pending_revocations' query for one combination of filters, built once."""
    query = select(_ROWS.c.serial).where(
        _ROWS.c.state.in_(UNREVOKED), _ROWS.c.revoke_after.is_not(None)
    )
    if by_grant:
        query = query.where(_ROWS.c.grant_id == bindparam("grant", type_=_UUID))
    if by_run:
        query = query.where(_ROWS.c.issued_by == bindparam("run", type_=String))
    if by_due:
        query = query.where(_ROWS.c.revoke_after <= bindparam("due_by", type_=UTCDateTime()))
    return query.order_by(_ROWS.c.revoke_after).limit(bindparam("limit"))


async def mark_revoked(session: AsyncSession, serial: str) -> bool:
    """The CA confirmed the revocation of a decided row: it becomes ``revoked``."""
    now = utcnow()
    done = await session.execute(
        update(Certificate)
        .where(
            Certificate.serial == serial,
            Certificate.state.in_(UNREVOKED),
            Certificate.revoke_after.is_not(None),
        )
        .values(state="revoked", revoked_at=now, updated_at=now)
    )
    await session.commit()
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


async def is_decided(session: AsyncSession, serial: str) -> bool:
    """Whether the ledger decided to revoke ``serial`` (the CA may not know yet)."""
    row = await session.get(Certificate, serial, populate_existing=True)
    return row is not None and (row.state == "revoked" or row.revoke_after is not None)


async def revoke_at_ca(
    sessions: async_sessionmaker[AsyncSession], ca: CertificateAuthority, serial: str, reason: str
) -> None:
    """Carry one decision to the CA: revoke ``serial`` there, then mark the row ``revoked``.

    Only what the ledger decided is ever revoked (``Conflict`` otherwise); the CA's
    ``CAUnavailable`` / ``CARefused`` propagate and leave the row decided.
    """
    async with sessions() as session:
        if not await is_decided(session, serial):
            raise Conflict(f"certificate {serial} is not marked for revocation in the ledger")
    await ca.revoke(serial, reason=reason)
    async with sessions() as session:
        await mark_revoked(session, serial)


async def pin(session: AsyncSession, serial: str) -> bool:
    """An issued row becomes the grant's usable certificate (``active``).

    Part of the activation transaction; False when the row is gone or was decided
    for revocation meanwhile (the activation must then be lost).
    """
    done = await session.execute(_PIN, {"pinned": serial, "now": utcnow()})
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


_PIN = (
    update(_ROWS)
    .where(
        _ROWS.c.serial == bindparam("pinned", type_=String),
        _ROWS.c.state.in_(("issued", "active")),
        _ROWS.c.revoke_after.is_(None),
    )
    .values(state="active", updated_at=bound_now())
)


async def orphans(
    session: AsyncSession, *, older_than: datetime, limit: int = 2000
) -> list[tuple[str, str]]:
    """(serial, issuing run) of rows signed or asked for, never pinned nor decided."""
    rows = await session.execute(
        select(Certificate.serial, Certificate.issued_by)
        .where(
            Certificate.state.in_(("requested", "issued")),
            Certificate.revoke_after.is_(None),
            Certificate.created_at < older_than,
        )
        .limit(limit)
    )
    return [(serial, issued_by) for serial, issued_by in rows]


async def decide_for_closed_grants(session: AsyncSession, *, limit: int = 2000) -> list[str]:
    """Undecided rows of grants that are revoked or expired: every one of them goes."""
    closed = select(Grant.id).where(Grant.status.in_(("revoked", "expired")))
    serials = list(
        await session.scalars(
            select(Certificate.serial)
            .where(
                Certificate.state.in_(UNREVOKED),
                Certificate.revoke_after.is_(None),
                Certificate.grant_id.in_(closed),
            )
            .limit(limit)
        )
    )
    if not serials:
        return []
    return await decide_revocation(session, reason="grant closed", serials=serials)


async def certificates_of_grant(session: AsyncSession, grant_id: uuid.UUID) -> list[Certificate]:
    """Every ledger row of a grant, newest first."""
    rows = await session.scalars(
        select(Certificate)
        .where(Certificate.grant_id == grant_id)
        .order_by(Certificate.created_at.desc(), Certificate.serial)
    )
    return list(rows)


def usable_at(moment: ColumnElement[datetime]) -> ColumnElement[bool]:
    """A ledger row that opens anything at ``moment``: pinned, or superseded in its overlap."""
    return or_(
        and_(_ROWS.c.state == "active", _ROWS.c.revoke_after.is_(None)),
        and_(_ROWS.c.state == "superseded", _ROWS.c.revoke_after > moment),
    )


SUPERSEDED_REASON = "superseded by a renewal"


@dataclass(frozen=True)
class CertificateStatus:
    """What B tells the holder of a certificate about it (OCSP-like, over mTLS)."""

    serial: str
    # unknown (not this ledger's), active, superseded (in its overlap), issued,
    # requested, or revoked (decided or confirmed at the CA).
    state: str
    reason: str | None = None
    revoked_at: datetime | None = None

    @property
    def withdrawn_for_cause(self) -> bool:
        """Revoked for a reason other than a renewal replacing it: the grant is gone."""
        return self.state == "revoked" and self.reason != SUPERSEDED_REASON


async def status_of(
    session: AsyncSession, serial: str, fingerprint: str, *, at: datetime
) -> CertificateStatus:
    row = await session.get(Certificate, serial)
    if row is None or row.fingerprint != fingerprint:
        return CertificateStatus(serial, "unknown")
    decided = row.revoke_after is not None and row.revoke_after <= at
    if row.state == "revoked" or decided:
        return CertificateStatus(
            serial, "revoked", row.revocation_reason, row.revoked_at or row.revoke_after
        )
    return CertificateStatus(serial, row.state)


@dataclass(frozen=True)
class Revocation:
    serial: str
    revoked_at: datetime
    reason: str | None


async def revocations(session: AsyncSession, *, at: datetime) -> list[Revocation]:
    """Every certificate the ledger holds revoked (confirmed, or decided and due) that has
    not expired yet: what a CRL lists. Expired ones drop off, as CRLs do."""
    rows = await session.execute(
        select(
            Certificate.serial,
            Certificate.revoked_at,
            Certificate.revoke_after,
            Certificate.revocation_reason,
        )
        .where(
            or_(
                Certificate.state == "revoked",
                and_(Certificate.revoke_after.is_not(None), Certificate.revoke_after <= at),
            ),
            or_(Certificate.not_after.is_(None), Certificate.not_after > at),
        )
        .order_by(Certificate.serial)
    )
    found = []
    for serial, revoked_at, revoke_after, reason in rows:
        when = revoked_at or revoke_after
        if when is not None:
            found.append(Revocation(serial, when, reason))
    return found
