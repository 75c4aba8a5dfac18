"""Request and response bodies (camelCase on the wire, separate from the ORM models)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field
from pydantic.alias_generators import to_camel

from federation.db.models import Grant, Peer, User
from federation.scope import Scope
from federation.tokens import MAX_TTL_SECONDS


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class _Input(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Problem(BaseModel):
    detail: str


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's error statuses: every one is a ``Problem`` body.

    Also replaces FastAPI's default 422 schema (a list of errors), which our
    handler never sends.
    """
    return {status: {"model": Problem} for status in statuses}


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here (422) rather than fail at insert (500).
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Free text that is stored: names, URLs, PEMs, reasons.
Text = Annotated[str, AfterValidator(_no_nul)]


class UserCreate(_Input):
    name: Text = Field(min_length=1, max_length=200)
    email: EmailStr


class UserOut(_Wire):
    id: uuid.UUID
    name: str
    email: str
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user)


_CN_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,62}[A-Za-z0-9])?$"


class PeerCreate(_Input):
    common_name: str = Field(min_length=1, max_length=64, pattern=_CN_PATTERN)
    display_name: Text = Field(min_length=1, max_length=200)
    endpoint_url: Text | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")


PeerState = Literal["pending", "active", "failed", "revoked"]


class PeerWorkflow(_Wire):
    id: str
    step: str
    remote_host: str | None = None
    common_name: str | None = None
    grant_id: str | None = None
    subject_user_id: str | None = None
    token_expires_at: str | None = None
    failure: str | None = None


class PeerOut(_Wire):
    id: uuid.UUID
    common_name: str | None
    display_name: str
    endpoint_url: str | None
    state: PeerState
    cert_serial: str | None
    cert_not_after: datetime | None
    cert_fingerprint: str | None
    failure_reason: str | None
    remote_grant_id: str | None
    remote_subject_user_id: str | None
    created_at: datetime
    updated_at: datetime
    # While a peer-add runs: its workflow and what it is doing.
    workflow: PeerWorkflow | None = None

    @classmethod
    def of(cls, peer: Peer) -> PeerOut:
        return cls.model_validate(peer)


class PeerEnroll(_Input):
    enrollment_url: Text = Field(min_length=1, max_length=2048)
    display_name: Text | None = Field(default=None, min_length=1, max_length=200)


class PeerEnrollOut(_Wire):
    peer_id: uuid.UUID
    workflow_id: str


class PeerKeypair(_Input):
    common_name: str = Field(min_length=1, max_length=64, pattern=_CN_PATTERN)
    display_name: Text = Field(min_length=1, max_length=200)
    endpoint_url: Text | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")


class PeerKeypairOut(_Wire):
    peer_id: uuid.UUID
    csr_pem: str


class PeerCert(_Input):
    cert_pem: Text = Field(min_length=1, max_length=65536)
    cert_chain_pem: Text | None = Field(default=None, max_length=65536)


GrantStatus = Literal["pending", "active", "revoked", "expired"]


class GrantCreate(_Input):
    subject_user_id: uuid.UUID
    peer_id: uuid.UUID
    # Scope keys stay snake_case, as in the reference.
    scope: Scope


class GrantRevoke(_Input):
    reason: Text | None = Field(default=None, max_length=500)


class GrantOut(_Wire):
    id: uuid.UUID
    subject_user_id: uuid.UUID
    peer_id: uuid.UUID
    scope: dict[str, Any]
    status: GrantStatus
    cert_serial: str | None
    cert_not_after: datetime | None
    activated_at: datetime | None
    revoked_at: datetime | None
    reason: str | None
    created_at: datetime

    @classmethod
    def of(cls, grant: Grant) -> GrantOut:
        return cls.model_validate(grant)


class TokenCreate(_Input):
    ttl_seconds: int = Field(default=MAX_TTL_SECONDS, strict=True)


class TokenOut(_Wire):
    token: str
    expires_at: datetime
    enrollment_url: str


class AuditOut(_Wire):
    id: int
    request_id: str
    created_at: datetime
    actor: str
    verb: str
    resource: str
    grant_id: uuid.UUID | None
    peer_id: uuid.UUID | None
    outcome: Literal["allowed", "denied"]
    status_code: int
    reason: str | None
    cert_serial: str | None


class Health(BaseModel):
    status: Literal["ok"]


class ReconcileOut(_Wire):
    schedule_id: str
    workflow_id: str | None
    claims_released: int = 0
    stranded_grants_expired: int = 0
    stale_pending_grants_expired: int = 0
    orphaned_peers_failed: int = 0
    lapsed_grants_expired: int = 0


class RunOut(_Wire):
    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    start_time: datetime
    close_time: datetime | None
    url: str
