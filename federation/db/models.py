"""SQLAlchemy models. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    bindparam,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# degraded: renewal is failing for a transient reason; expired: past notAfter, not renewed.
PEER_STATES = ("pending", "active", "degraded", "expired", "failed", "revoked")
GRANT_STATUSES = ("pending", "active", "revoked", "expired")
AUDIT_OUTCOMES = ("allowed", "denied")
# The certificate ledger (B): requested = serial reserved and the CA asked (the reply may
# be lost); issued = signed, not pinned; active = pinned on its grant; superseded =
# replaced by a renewal (accepted until its overlap ends); revoked = revoked at the CA.
CERTIFICATE_STATES = ("requested", "issued", "active", "superseded", "revoked")
CERTIFICATE_PURPOSES = ("enrollment", "renewal")


def utcnow() -> datetime:
    return datetime.now(UTC)


def wire_time(moment: datetime) -> str:
    """A timestamp as every API answer writes it, the text pydantic makes of an aware UTC
    datetime: ``2026-12-03T08:04:53.123456Z`` (microseconds only when non-zero)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both backends (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def bound_now() -> BindParameter[datetime]:
    """A statement's ``now``, bound at each execution (for statements built once)."""
    return bindparam("now", type_=UTCDateTime())


def _check_in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    pass


def table_of(model: type[Base]) -> Table:
    """A model's table, for statements built on it (``__table__`` is typed as any FROM)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Peer(Base):
    __tablename__ = "federation_peers"
    __table_args__ = (
        CheckConstraint(_check_in("state", PEER_STATES), name="ck_federation_peers_state"),
        Index("ix_federation_peers_state", "state"),
        Index("ix_federation_peers_state_not_after", "state", "cert_not_after"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Null only on the requesting side until the remote's preflight names it.
    common_name: Mapped[str | None] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    endpoint_url: Mapped[str | None] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    cert_pem: Mapped[str | None] = mapped_column(Text)
    cert_serial: Mapped[str | None] = mapped_column(String(64), index=True)
    cert_not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Sealed (AES-256-GCM) PEM of our client key; only on the requesting side.
    client_key_sealed: Mapped[str | None] = mapped_column(Text)
    # Sealed enrollment URL (it contains the token) while a peer-add runs.
    enrollment_url_sealed: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    # Requesting side only: what the remote's certificate says we act for.
    remote_grant_id: Mapped[str | None] = mapped_column(String(36))
    remote_subject_user_id: Mapped[str | None] = mapped_column(String(36))
    # Requesting side only: where the remote's federation listener is, and the remote's
    # CA root as pinned at enrollment (PEM and SHA-256 of its DER).
    federation_url: Mapped[str | None] = mapped_column(String(2048))
    # Requesting side only: the intermediates our client certificate chains through.
    cert_chain_pem: Mapped[str | None] = mapped_column(Text)
    remote_ca_pem: Mapped[str | None] = mapped_column(Text)
    remote_ca_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Requesting side only: the key of a renewal in progress, sealed, until the swap.
    next_key_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Grant(Base):
    __tablename__ = "federation_grants"
    __table_args__ = (
        CheckConstraint(_check_in("status", GRANT_STATUSES), name="ck_federation_grants_status"),
        Index("ix_federation_grants_status_created", "status", "created_at"),
        Index("ix_federation_grants_peer_status", "peer_id", "status"),
        Index("ix_federation_grants_status_not_after", "status", "cert_not_after"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subject_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    peer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("federation_peers.id"))
    scope: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    cert_serial: Mapped[str | None] = mapped_column(String(64))
    cert_not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    # The grant-level claim: the token whose redeem is in flight. At most one enrollment
    # of a grant runs at a time, so a second token of the same grant never reaches the CA.
    enrolling_token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Certificate(Base):
    """The ledger: every certificate this gateway's CA was asked to sign for a grant."""

    __tablename__ = "federation_certificates"
    __table_args__ = (
        CheckConstraint(
            _check_in("state", CERTIFICATE_STATES), name="ck_federation_certificates_state"
        ),
        CheckConstraint(
            _check_in("purpose", CERTIFICATE_PURPOSES), name="ck_federation_certificates_purpose"
        ),
        Index("ix_federation_certificates_grant_state", "grant_id", "state"),
        Index("ix_federation_certificates_state_created", "state", "created_at"),
        Index("ix_federation_certificates_revoke_after", "state", "revoke_after"),
    )

    # Lowercase hex, no prefix: the same form as Grant.cert_serial and Peer.cert_serial.
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("federation_grants.id"))
    peer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("federation_peers.id"))
    state: Mapped[str] = mapped_column(String(16), default="requested")
    purpose: Mapped[str] = mapped_column(String(16), default="enrollment")
    # SHA-256 of the CSR DER this certificate answers (idempotent replays find it).
    csr_fingerprint: Mapped[str] = mapped_column(String(64))
    # "<workflow id>/<run id>" of the run that asked the CA: reconcile asks if it lives.
    issued_by: Mapped[str] = mapped_column(String(200))
    cert_pem: Mapped[str | None] = mapped_column(Text)
    # The intermediates the CA returned with it (never the root).
    chain_pem: Mapped[str | None] = mapped_column(Text)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the ledger decides this certificate must be revoked at the CA (at or after
    # this time); state becomes ``revoked`` once the CA has confirmed it.
    revoke_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class EnrollmentToken(Base):
    __tablename__ = "federation_enrollment_tokens"
    __table_args__ = (
        Index("ix_federation_enrollment_tokens_grant", "grant_id"),
        # Reconcile looks for claimed tokens; partial on PostgreSQL and SQLite alike.
        Index(
            "ix_federation_enrollment_tokens_claimed",
            "used_at",
            postgresql_where=text("used_at IS NOT NULL AND cert_serial IS NULL"),
            sqlite_where=text("used_at IS NOT NULL AND cert_serial IS NULL"),
        ),
    )

    # SHA-256 hex of the token: the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("federation_grants.id"))
    peer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("federation_peers.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    csr_fingerprint: Mapped[str | None] = mapped_column(String(64))
    cert_serial: Mapped[str | None] = mapped_column(String(64))
    # Set when the saga burns the token on purpose (DESIGN §6): not a stranded claim.
    burnt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    __tablename__ = "federation_audit_log"
    __table_args__ = (
        CheckConstraint(_check_in("outcome", AUDIT_OUTCOMES), name="ck_federation_audit_outcome"),
        Index("ix_federation_audit_grant", "grant_id"),
        Index("ix_federation_audit_peer", "peer_id"),
        Index("ix_federation_audit_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    verb: Mapped[str] = mapped_column(String(50))
    resource: Mapped[str] = mapped_column(String(50))
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("federation_grants.id", ondelete="SET NULL")
    )
    peer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("federation_peers.id", ondelete="SET NULL")
    )
    outcome: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(500))
    cert_serial: Mapped[str | None] = mapped_column(String(64))
    # Set by steps that may run twice (a worker crash after the commit): one row per key.
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    # Federated requests: SHA-256 of the normalized query, what went out, how long it took.
    query_sha256: Mapped[str | None] = mapped_column(String(64))
    rows_out: Mapped[int | None] = mapped_column(Integer)
    bytes_out: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    # Anonymous denials are aggregated per client address and minute: how many this row is.
    client_address: Mapped[str | None] = mapped_column(String(64))
    occurrences: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class GatewayIdentity(Base):
    """One row: this gateway's identity, made on first start. Its workers serve only its
    own task queue and its activities act only for its own runs."""

    __tablename__ = "mosaic_gateway"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class _OwnedResource:
    """What every built-in federated resource row has: an owner, maybe a team, text."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    team_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Task(_OwnedResource, Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_owner_keyset", "owner_user_id", "created_at", "id"),)


class Note(_OwnedResource, Base):
    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_owner_keyset", "owner_user_id", "created_at", "id"),)


class Credential(_OwnedResource, Base):
    __tablename__ = "credentials"
    __table_args__ = (Index("ix_credentials_owner_keyset", "owner_user_id", "created_at", "id"),)
