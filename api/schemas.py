"""Request and response bodies (camelCase on the wire, separate from the ORM models)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from federation.common_names import COMMON_NAME_MAX_LENGTH, COMMON_NAME_PATTERN
from federation.db.models import Certificate, Grant, Peer, User
from federation.remote_trust import normalize_fingerprint
from federation.resources import BODY_MAX_BYTES, TITLE_MAX_CHARS, ResourceItem
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


_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _email_address(value: str) -> str:
    # email-validator refuses special-use domains (.local, localhost, single labels)
    # outright, and self-hosted gateways live on them: it judges the local part only,
    # the domain must be a syntactically valid host name (IDNA allowed, no IP literal).
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("must be an address of the form name@domain")
    try:
        checked = validate_email(f"{local}@example.com", check_deliverability=False)
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    except UnicodeError:
        ascii_domain = ""
    labels = ascii_domain.split(".")
    valid = all(map(_DNS_LABEL.fullmatch, labels)) and not labels[-1].isdigit()
    if not valid or len(ascii_domain) > 253:
        raise ValueError("the part after the @-sign is not a valid domain name")
    return f"{checked.local_part}@{domain.lower()}"


class UserCreate(_Input):
    name: Text = Field(min_length=1, max_length=200)
    # Any syntactically valid address, internal domains included (ann@mosaic.local).
    email: Annotated[str, AfterValidator(_email_address)] = Field(
        max_length=254, json_schema_extra={"format": "email"}
    )


class UserOut(_Wire):
    id: uuid.UUID
    name: str
    email: str
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user)


# The same rule as a remote's preflight answer is held to (federation.common_names).
CommonName = Annotated[
    str, Field(min_length=1, max_length=COMMON_NAME_MAX_LENGTH, pattern=COMMON_NAME_PATTERN)
]


class PeerCreate(_Input):
    common_name: CommonName
    display_name: Text = Field(min_length=1, max_length=200)
    endpoint_url: Text | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")


PeerState = Literal["pending", "active", "degraded", "expired", "failed", "revoked"]


class PeerWorkflow(_Wire):
    id: str
    step: str
    remote_host: str | None = None
    common_name: str | None = None
    grant_id: str | None = None
    subject_user_id: str | None = None
    token_expires_at: datetime | None = None
    failure: str | None = None
    # SHA-256 of the remote's CA root as its preflight announced it (shown before the CSR).
    ca_fingerprint: str | None = None


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
    # Requesting side, after a peer add: the remote's CA root pinned at enrollment (its
    # SHA-256) and the remote's federation listener URL.
    remote_ca_fingerprint: str | None = None
    federation_url: str | None = None
    created_at: datetime
    updated_at: datetime
    # While a peer-add runs: its workflow and what it is doing.
    workflow: PeerWorkflow | None = None
    # Requesting side, once active: the certificate's lifecycle run.
    lifecycle: PeerLifecycle | None = None

    @classmethod
    def of(cls, peer: Peer) -> PeerOut:
        return cls.model_validate(peer)


class PeerEnroll(_Input):
    enrollment_url: Text = Field(min_length=1, max_length=2048)
    display_name: Text | None = Field(default=None, min_length=1, max_length=200)
    # The remote CA root's SHA-256 the admin expects (colons and case tolerated).
    ca_fingerprint: Annotated[str, AfterValidator(normalize_fingerprint)] | None = Field(
        default=None, max_length=200
    )


class PeerEnrollOut(_Wire):
    peer_id: uuid.UUID
    workflow_id: str


class PeerKeypair(_Input):
    common_name: CommonName
    display_name: Text = Field(min_length=1, max_length=200)
    endpoint_url: Text | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")


class PeerKeypairOut(_Wire):
    peer_id: uuid.UUID
    csr_pem: str


class PeerCert(_Input):
    cert_pem: Text = Field(min_length=1, max_length=65536)
    cert_chain_pem: Text | None = Field(default=None, max_length=65536)
    # The remote's CA root (pinned: the certificate must chain to it) and its federation
    # listener: with both, the peer can call the remote and renew on its own.
    ca_cert_pem: Text | None = Field(default=None, max_length=65536)
    federation_url: Text | None = Field(default=None, max_length=2048)


class PeerLifecycle(_Wire):
    """The peer's certificate lifecycle run (gateway A), as its ``status`` query says."""

    id: str
    state: str
    serial: str | None = None
    not_after: datetime | None = None
    next_renewal_at: datetime | None = None
    last_error: str | None = None
    renewals: int = 0


class PeerRenewOut(_Wire):
    peer_id: uuid.UUID
    workflow_id: str


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


CertificateState = Literal["requested", "issued", "active", "superseded", "revoked"]


class CertificateOut(_Wire):
    """A ledger row: a certificate the CA was asked to sign for a grant."""

    serial: str
    grant_id: uuid.UUID
    peer_id: uuid.UUID
    state: CertificateState
    purpose: Literal["enrollment", "renewal"]
    fingerprint: str | None
    not_before: datetime | None
    not_after: datetime | None
    issued_by: str
    superseded_at: datetime | None
    revoke_after: datetime | None
    revocation_reason: str | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, certificate: Certificate) -> CertificateOut:
        return cls.model_validate(certificate)


class TokenCreate(_Input):
    ttl_seconds: int = Field(default=MAX_TTL_SECONDS, strict=True)


class TokenOut(_Wire):
    token: str
    expires_at: datetime
    enrollment_url: str
    # Older unused tokens of the grant withdrawn by this one: one redeemable URL per grant.
    withdrawn_tokens: int = 0


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
    # An anonymous denial (unknown or malformed token) is one row per client address,
    # verb and minute: how many requests it stands for, and from where.
    occurrences: int = 1
    client_address: str | None = None


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
    certificates_withdrawn: int = 0
    certificates_revoked: int = 0
    certificate_revocations_left: int = 0
    lifecycles_started: int = 0


class RunOut(_Wire):
    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    start_time: datetime
    close_time: datetime | None
    url: str


class ResourceCreate(_Input):
    owner_user_id: uuid.UUID
    title: Text = Field(min_length=1, max_length=TITLE_MAX_CHARS)
    # Characters here; the core holds the body to BODY_MAX_BYTES of UTF-8.
    body: Text = Field(default="", max_length=BODY_MAX_BYTES)
    team_id: uuid.UUID | None = None


class ResourceOut(_Wire):
    """A row of a served kind; the same JSON as ``ResourceItem.wire()``."""

    id: uuid.UUID
    owner_user_id: uuid.UUID
    team_id: uuid.UUID | None
    title: str
    body: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: ResourceItem) -> ResourceOut:
        return cls.model_validate(item)


class RemoteRefusal(BaseModel):
    status: int | None
    reason: str


class RemoteProblem(BaseModel):
    detail: str
    remote: RemoteRefusal


class PeerRequest(_Input):
    """A call this gateway makes to a peer's remote, as that peer (mTLS)."""

    verb: Literal["capabilities", "list", "get"]
    resource: str | None = Field(default=None, pattern=r"^[a-z_]{1,40}$")
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    limit: int | None = Field(default=None, ge=1, le=10000, strict=True)
    cursor: str | None = Field(default=None, min_length=1, max_length=512)
