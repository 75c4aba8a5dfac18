"""What a remote gateway's enrollment answers may hold, checked field by field.

The remote is not trusted: every field A uses is checked with the same rules as
our own routes (common name, canonical UUIDs, timestamps, fingerprints, PEM sizes,
URLs) and a bad one refuses the enrollment at once with a one-line reason that
names the field and never echoes the value. Free text from the remote (its
``detail``) is stripped of control characters before it is stored or shown.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from federation.common_names import is_common_name
from federation.errors import FederationError, InvalidInput
from federation.logredact import redact_tokens
from federation.pki.fields import is_canonical_uuid
from federation.remote_trust import is_fingerprint
from federation.remote_url import AddressPolicy, parse_federation_url

CERT_PEM_MAX = 16 * 1024
CHAIN_PEM_MAX = 48 * 1024
_TIMESTAMP_MAX = 64
_SERIAL = re.compile(r"[0-9a-f]{1,64}")
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)?")


class RemoteAnswerRejected(FederationError):
    """The remote's answer breaks the protocol: shape, a field, or its size."""

    kind = "RemoteAnswerRejected"
    status = 502


@dataclass(frozen=True)
class PreflightAnswer:
    common_name: str
    grant_id: str
    subject_user_id: str
    expires_at: str
    ca_fingerprint: str
    federation_url: str | None


@dataclass(frozen=True)
class RedeemAnswer:
    cert_pem: str
    chain_pem: str
    ca_cert_pem: str
    federation_url: str | None


def one_line(value: object, limit: int = 200) -> str:
    """Remote free text made safe to store and show: one line, no control or escape
    characters, no token, at most ``limit`` characters."""
    text = _ESCAPE_SEQUENCE.sub(" ", value if isinstance(value, str) else "")
    text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return redact_tokens(" ".join(text.split()))[:limit]


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """The answer parsed as a JSON object, or a refusal."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise RemoteAnswerRejected(f"remote {what} answer is not JSON") from None
    if not isinstance(parsed, dict):
        raise RemoteAnswerRejected(f"remote {what} answer is not a JSON object")
    return parsed


def read_preflight(body: dict[str, Any], policy: AddressPolicy) -> PreflightAnswer:
    """Check the preflight answer: what the token is for, B's CA and listener."""
    fields = _Fields(body, "preflight")
    common_name = fields.required("peerCommonName")
    if not is_common_name(common_name):
        fields.refuse("peerCommonName", "is not a valid common name")
    fingerprint = fields.required("caFingerprint")
    if not is_fingerprint(fingerprint):
        fields.refuse("caFingerprint", "is not a SHA-256 fingerprint (64 lowercase hex)")
    return PreflightAnswer(
        common_name=common_name,
        grant_id=fields.uuid("grantId"),
        subject_user_id=fields.uuid("subjectUserId"),
        expires_at=fields.timestamp("expiresAt"),
        ca_fingerprint=fingerprint,
        federation_url=fields.federation_url(policy),
    )


def read_redeem(body: dict[str, Any], policy: AddressPolicy) -> RedeemAnswer:
    """Check the redeem answer: the certificate, its chain, B's CA root and listener."""
    fields = _Fields(body, "redeem")
    for name in ("grantId", "subjectUserId"):
        if name in body:
            fields.uuid(name)
    if "certNotAfter" in body:
        fields.timestamp("certNotAfter")
    if "certSerial" in body and not _SERIAL.fullmatch(fields.required("certSerial")):
        fields.refuse("certSerial", "is not a lowercase hex serial")
    chain = fields.pem("certChainPem", CHAIN_PEM_MAX) if body.get("certChainPem") else ""
    return RedeemAnswer(
        cert_pem=fields.pem("certPem", CERT_PEM_MAX),
        chain_pem=chain,
        ca_cert_pem=fields.pem("caCertPem", CERT_PEM_MAX),
        federation_url=fields.federation_url(policy),
    )


class _Fields:
    def __init__(self, body: dict[str, Any], what: str) -> None:
        self._body = body
        self._what = what

    def refuse(self, name: str, problem: str) -> NoReturn:
        raise RemoteAnswerRejected(f"remote {self._what} answer: {name} {problem}")

    def required(self, name: str) -> str:
        value = self._body.get(name)
        if value is None:
            self.refuse(name, "is missing")
        if not isinstance(value, str):
            self.refuse(name, "is not a string")
        return value

    def uuid(self, name: str) -> str:
        value = self.required(name)
        if not is_canonical_uuid(value):
            self.refuse(name, "is not a canonical UUID")
        return value

    def timestamp(self, name: str) -> str:
        value = self.required(name)
        try:
            parsed = datetime.fromisoformat(value) if len(value) <= _TIMESTAMP_MAX else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.refuse(name, "is not an ISO 8601 timestamp with a time zone")
        return parsed.astimezone(UTC).isoformat()

    def pem(self, name: str, limit: int) -> str:
        value = self.required(name)
        if len(value) > limit:
            self.refuse(name, f"is larger than {limit} characters")
        if not value.isascii() or any(ch < " " and ch not in "\r\n\t" for ch in value):
            self.refuse(name, "holds characters a PEM cannot hold")
        if "-----BEGIN CERTIFICATE-----" not in value:
            self.refuse(name, "is not a PEM certificate")
        return value

    def federation_url(self, policy: AddressPolicy) -> str | None:
        value = self._body.get("federationUrl")
        if value is None:
            return None
        if not isinstance(value, str):
            self.refuse("federationUrl", "is not a string")
        try:
            return parse_federation_url(value, policy)
        except InvalidInput as refused:
            raise RemoteAnswerRejected(f"remote {self._what} answer: {refused.message}") from None
