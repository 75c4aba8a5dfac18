"""DESIGN §5 invariant 7 on both lanes: bad input gets a 4xx with a one-line
reason and changes nothing (the audit log aside: a denied redeem is audited).

Every case runs against a fresh pending grant with a fresh token, so in the CSR
cases the token is valid and only the CSR is wrong; those cases then redeem the
same token with a good CSR to show the refusal left it usable.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.dbsnap import snapshot
from tests.support.factories import DEFAULT_SCOPE, make_peer, make_token, make_user
from tests.support.legacy_csr import legacy_signed_csr
from tests.support.pki import make_csr

pytestmark = pytest.mark.usefixtures("worker")

ENROLL = "/api/federation/enrollment"
ADMIN = "/api/admin/federation"
ONE_MIB = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Ctx:
    """A pending grant with a fresh token: what a case may refer to."""

    token: str
    grant: str
    peer: str
    user: str
    email: str
    cn: str
    unknown: str = field(default_factory=lambda: str(uuid.uuid4()))


Json = Callable[[Ctx], Any]


@dataclass(frozen=True)
class Bad:
    id: str
    method: str
    # Formatted with the context: {token} {grant} {peer} {unknown}.
    path: str
    status: int
    json: Json | None = None
    raw: Callable[[Ctx], bytes] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Text that must not come back in the detail (a token we sent, say).
    echo: str | None = None
    # A refused redeem with a valid token: audited, and the token still works after.
    redeem_refused: bool = False


# --- CSRs that are wrong in one way each -------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _csr(
    cn: str,
    key: CertificateIssuerPrivateKeyTypes,
    *,
    sans: list[str] | None = None,
    ca: bool = False,
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(cn))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(s) for s in (sans or [cn])]), critical=False
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _rsa2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _good(ctx: Ctx) -> str:
    return make_csr(ctx.cn)[0]


def _truncated(ctx: Ctx) -> str:
    pem = _good(ctx)
    return pem[: len(pem) // 2]


def _certificate(ctx: Ctx) -> str:
    key = _p256()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ctx.cn))
        .issuer_name(_name(ctx.cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _broken_signature(ctx: Ctx) -> str:
    der = bytearray(
        x509.load_pem_x509_csr(_good(ctx).encode()).public_bytes(serialization.Encoding.DER)
    )
    der[-1] ^= 0x01  # last byte of the ECDSA signature: still parses, no longer verifies
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


def _der_base64(ctx: Ctx) -> str:
    lines = _good(ctx).strip().splitlines()
    return "".join(lines[1:-1])


def _csr_case(case_id: str, csr: Callable[[Ctx], str], status: int = 400) -> Bad:
    return Bad(
        case_id,
        "POST",
        f"{ENROLL}/{{token}}",
        status,
        json=lambda ctx: {"csrPem": csr(ctx)},
        redeem_refused=status == 400,
    )


CSR_CASES = [
    _csr_case(
        "csr-malformed-pem",
        lambda ctx: (
            "-----BEGIN CERTIFICATE REQUEST-----\n!!not base64!!\n"
            "-----END CERTIFICATE REQUEST-----\n"
        ),
    ),
    _csr_case("csr-truncated-pem", _truncated),
    _csr_case("csr-certificate-instead-of-csr", _certificate),
    _csr_case("csr-broken-signature", _broken_signature),
    _csr_case("csr-rsa-1024", lambda ctx: _csr(ctx.cn, rsa.generate_private_key(65537, 1024))),
    _csr_case("csr-p192", lambda ctx: _csr(ctx.cn, ec.generate_private_key(ec.SECP192R1()))),
    _csr_case("csr-ed25519", lambda ctx: _csr(ctx.cn, ed25519.Ed25519PrivateKey.generate())),
    _csr_case("csr-requests-ca-true", lambda ctx: _csr(ctx.cn, _p256(), ca=True)),
    _csr_case("csr-wrong-cn", lambda ctx: _csr("someone-else.example.com", _p256())),
    _csr_case(
        "csr-extra-sans",
        lambda ctx: _csr(ctx.cn, _p256(), sans=[ctx.cn, "evil.example.com"]),
    ),
    _csr_case("csr-two-pems", lambda ctx: _good(ctx) + _good(ctx)),
    _csr_case("csr-der-base64-without-armor", _der_base64),
    _csr_case("csr-plain-text", lambda ctx: "hello, I am a certificate request"),
    _csr_case("csr-with-nul-byte", lambda ctx: _good(ctx).replace("\n", "\n\x00", 2)),
    _csr_case("csr-over-16kib", lambda ctx: _good(ctx) + "\n" * 17_000),
    _csr_case("csr-empty-string", lambda ctx: "", status=422),
    # Valid self-signatures over a broken hash: refused for the algorithm, before the signature.
    _csr_case("csr-sha1-ecdsa", lambda ctx: legacy_signed_csr(ctx.cn, "sha1", _p256())),
    _csr_case("csr-sha1-rsa", lambda ctx: legacy_signed_csr(ctx.cn, "sha1", _rsa2048())),
    _csr_case("csr-md5-rsa", lambda ctx: legacy_signed_csr(ctx.cn, "md5", _rsa2048())),
]


def _redeem_json(ctx: Ctx) -> dict[str, str]:
    return {"csrPem": _good(ctx)}


def _bad_token(case_id: str, method: str, token: str, status: int = 404) -> Bad:
    return Bad(
        case_id,
        method,
        f"{ENROLL}/{token}",
        status,
        json=_redeem_json if method == "POST" else None,
        echo=token if len(token) >= 4 else None,
    )


TOKEN_CASES = [
    _bad_token("token-too-short-get", "GET", "abc"),
    _bad_token("token-63-hex-post", "POST", "a" * 63),
    _bad_token("token-65-hex-get", "GET", "a" * 65),
    _bad_token("token-129-chars-get", "GET", "a" * 129, status=422),
    _bad_token("token-non-hex-get", "GET", "g" * 64),
    _bad_token("token-non-hex-post", "POST", "z" * 64),
    _bad_token("token-unicode-get", "GET", "ä" * 64),
    _bad_token("token-unicode-post", "POST", "ß" * 32 + "0" * 32),
    _bad_token("token-sql-get", "GET", "' OR 1=1 --"),
    _bad_token("token-sql-post", "POST", "' OR 1=1 --"),
    _bad_token("token-path-traversal-get", "GET", "..%2F..%2Fadmin%2Fusers"),
    _bad_token("token-path-traversal-post", "POST", "..%2F..%2Fadmin%2Fusers"),
    _bad_token("token-dot-dot-post", "POST", "%2e%2e"),
    _bad_token("token-unknown-well-formed-post", "POST", "0" * 64),
    _bad_token("token-missing-get", "GET", ""),
    Bad(
        "token-uppercase-hex-get",
        "GET",
        f"{ENROLL}/{{token_upper}}",
        404,
    ),
    Bad(
        "token-uppercase-hex-post",
        "POST",
        f"{ENROLL}/{{token_upper}}",
        404,
        json=_redeem_json,
    ),
]

REDEEM_BODY_CASES = [
    Bad("redeem-csrpem-number", "POST", f"{ENROLL}/{{token}}", 422, json=lambda c: {"csrPem": 1}),
    Bad("redeem-csrpem-list", "POST", f"{ENROLL}/{{token}}", 422, json=lambda c: {"csrPem": []}),
    Bad("redeem-missing-field", "POST", f"{ENROLL}/{{token}}", 422, json=lambda c: {}),
    Bad(
        "redeem-extra-field",
        "POST",
        f"{ENROLL}/{{token}}",
        422,
        json=lambda c: {"csrPem": _good(c), "grantId": c.grant},
    ),
    Bad("redeem-null-body", "POST", f"{ENROLL}/{{token}}", 422, raw=lambda c: b"null"),
    Bad("redeem-array-body", "POST", f"{ENROLL}/{{token}}", 422, json=lambda c: [_good(c)]),
    Bad(
        "redeem-invalid-json",
        "POST",
        f"{ENROLL}/{{token}}",
        422,
        raw=lambda c: b'{"csrPem": "-----BEGIN',
    ),
    Bad(
        "redeem-text-plain-body",
        "POST",
        f"{ENROLL}/{{token}}",
        422,
        raw=lambda c: _good(c).encode(),
        content_type="text/plain",
    ),
    Bad(
        "redeem-form-body",
        "POST",
        f"{ENROLL}/{{token}}",
        422,
        raw=lambda c: b"csrPem=abc",
        content_type="application/x-www-form-urlencoded",
    ),
    Bad("redeem-no-body", "POST", f"{ENROLL}/{{token}}", 422),
    Bad(
        "redeem-1mib-body",
        "POST",
        f"{ENROLL}/{{token}}",
        413,
        json=lambda c: {"csrPem": "A" * ONE_MIB},
    ),
    Bad("redeem-wrong-method", "DELETE", f"{ENROLL}/{{token}}", 405),
]


def _user(name: Any = "Ann", email: Any = None) -> Json:
    return lambda c: {"name": name, "email": email or f"{uuid.uuid4().hex[:12]}@example.com"}


def _peer(cn: Any = None, display: Any = "Gateway", **extra: Any) -> Json:
    return lambda c: {
        "commonName": cn or f"{uuid.uuid4().hex[:12]}.example.com",
        "displayName": display,
        **extra,
    }


def _grant(**changes: Any) -> Json:
    def build(c: Ctx) -> dict[str, Any]:
        body: dict[str, Any] = {"subjectUserId": c.user, "peerId": c.peer, "scope": DEFAULT_SCOPE}
        scope = dict(DEFAULT_SCOPE)
        for key, value in changes.items():
            if key.startswith("scope_"):
                scope[key.removeprefix("scope_")] = value
            elif value is _DROP:
                body.pop(key)
            else:
                body[key] = value
        if body.get("scope") is DEFAULT_SCOPE:
            body["scope"] = scope
        return body

    return build


_DROP = object()

USER_CASES = [
    Bad("user-email-sql", "POST", "/api/admin/users", 422, json=_user(email="' OR 1=1 --")),
    Bad("user-email-unicode-no-at", "POST", "/api/admin/users", 422, json=_user(email="ünïcødé")),
    Bad("user-email-number", "POST", "/api/admin/users", 422, json=_user(email=42)),
    Bad("user-name-empty", "POST", "/api/admin/users", 422, json=_user(name="")),
    Bad("user-name-unicode-too-long", "POST", "/api/admin/users", 422, json=_user(name="é" * 201)),
    Bad("user-name-list", "POST", "/api/admin/users", 422, json=_user(name=["Ann"])),
    Bad("user-name-nul-byte", "POST", "/api/admin/users", 422, json=_user(name="Ann\x00")),
    Bad(
        "user-name-lone-surrogate",
        "POST",
        "/api/admin/users",
        422,
        raw=lambda c: b'{"name": "Ann\\ud800", "email": "surrogate@example.com"}',
    ),
    Bad("user-missing-email", "POST", "/api/admin/users", 422, json=lambda c: {"name": "Ann"}),
    Bad(
        "user-extra-field",
        "POST",
        "/api/admin/users",
        422,
        json=lambda c: {"name": "Ann", "email": "x@example.com", "isAdmin": True},
    ),
    Bad("user-null-body", "POST", "/api/admin/users", 422, raw=lambda c: b"null"),
    Bad("user-invalid-json", "POST", "/api/admin/users", 422, raw=lambda c: b"{'name': 'Ann'}"),
    Bad(
        "user-non-json-content-type",
        "POST",
        "/api/admin/users",
        422,
        raw=lambda c: b"name=Ann&email=ann@example.com",
        content_type="application/x-www-form-urlencoded",
    ),
    Bad(
        "user-duplicate-email",
        "POST",
        "/api/admin/users",
        409,
        json=lambda c: {"name": "Again", "email": c.email},
    ),
]


def _enroll_case(case_id: str, url: str, **extra: Any) -> Bad:
    return Bad(
        case_id,
        "POST",
        f"{ADMIN}/peers/enroll",
        422,
        json=lambda c: {"enrollmentUrl": url.format(token=c.token), **extra},
        echo="{token}",
    )


PEER_CASES = [
    Bad("peer-cn-unicode", "POST", f"{ADMIN}/peers", 422, json=_peer(cn="gw-ä.example.com")),
    Bad(
        "peer-cn-sql",
        "POST",
        f"{ADMIN}/peers",
        422,
        json=_peer(cn="x'; DROP TABLE federation_peers; --"),
    ),
    Bad("peer-cn-nul-byte", "POST", f"{ADMIN}/peers", 422, json=_peer(cn="gw\x00.example.com")),
    Bad("peer-cn-too-long", "POST", f"{ADMIN}/peers", 422, json=_peer(cn="a" * 65)),
    Bad("peer-display-name-empty", "POST", f"{ADMIN}/peers", 422, json=_peer(display="")),
    Bad("peer-display-name-nul-byte", "POST", f"{ADMIN}/peers", 422, json=_peer(display="G\x00")),
    Bad(
        "peer-endpoint-javascript",
        "POST",
        f"{ADMIN}/peers",
        422,
        json=_peer(endpointUrl="javascript:alert(1)"),
    ),
    Bad(
        "peer-endpoint-nul-byte",
        "POST",
        f"{ADMIN}/peers",
        422,
        json=_peer(endpointUrl="https://gw.example.com/\x00"),
    ),
    Bad(
        "peer-duplicate-cn",
        "POST",
        f"{ADMIN}/peers",
        409,
        json=lambda c: {"commonName": c.cn, "displayName": "again"},
    ),
    Bad("peer-extra-field", "POST", f"{ADMIN}/peers", 422, json=_peer(state="active")),
    Bad("peer-missing-fields", "POST", f"{ADMIN}/peers", 422, json=lambda c: {}),
    Bad("peer-get-unknown-id", "GET", f"{ADMIN}/peers/{{unknown}}", 404),
    Bad("peer-get-non-uuid", "GET", f"{ADMIN}/peers/not-a-uuid", 422),
    Bad("peer-get-sql-id", "GET", f"{ADMIN}/peers/1%27%20OR%201%3D1", 422),
    Bad("peer-list-unknown-state", "GET", f"{ADMIN}/peers?state=hacked", 422),
    Bad(
        "peer-cert-unknown-peer",
        "PATCH",
        f"{ADMIN}/peers/{{unknown}}/cert",
        404,
        json=lambda c: {"certPem": _certificate(c)},
    ),
    Bad(
        "peer-cert-not-a-pem",
        "PATCH",
        f"{ADMIN}/peers/{{peer}}/cert",
        404,  # a registered (remote) peer has no client key of ours to match
        json=lambda c: {"certPem": "not a certificate"},
    ),
    Bad(
        "peer-cert-number",
        "PATCH",
        f"{ADMIN}/peers/{{peer}}/cert",
        422,
        json=lambda c: {"certPem": 7},
    ),
    Bad(
        "peer-enroll-ftp-url",
        "POST",
        f"{ADMIN}/peers/enroll",
        422,
        json=lambda c: {"enrollmentUrl": f"ftp://gw.example.com{ENROLL}/{c.token}"},
        echo="{token}",
    ),
    Bad(
        "peer-enroll-http-not-loopback",
        "POST",
        f"{ADMIN}/peers/enroll",
        422,
        json=lambda c: {"enrollmentUrl": f"http://gw.example.com{ENROLL}/{c.token}"},
        echo="{token}",
    ),
    Bad(
        "peer-enroll-query-string",
        "POST",
        f"{ADMIN}/peers/enroll",
        422,
        json=lambda c: {"enrollmentUrl": f"https://gw.example.com{ENROLL}/{c.token}?x=1"},
        echo="{token}",
    ),
    Bad(
        "peer-enroll-credentials-in-url",
        "POST",
        f"{ADMIN}/peers/enroll",
        422,
        json=lambda c: {"enrollmentUrl": f"https://u:p@gw.example.com{ENROLL}/{c.token}"},
        echo="{token}",
    ),
    Bad(
        "peer-enroll-nul-in-host",
        "POST",
        f"{ADMIN}/peers/enroll",
        422,
        json=lambda c: {"enrollmentUrl": f"https://gw\x00.example.com{ENROLL}/{c.token}"},
        echo="{token}",
    ),
    Bad(
        "peer-keypair-cn-sql",
        "POST",
        f"{ADMIN}/peers/keypair",
        422,
        json=_peer(cn="' OR 1=1 --"),
    ),
    # The common-name rule a remote's preflight is held to as well (federation.common_names).
    Bad("peer-cn-wildcard", "POST", f"{ADMIN}/peers", 422, json=_peer(cn="*.example.com")),
    Bad(
        "peer-cn-newline-ansi",
        "POST",
        f"{ADMIN}/peers",
        422,
        json=_peer(cn="gw.example.com\n\x1b[31mEVIL\x1b[0m"),
    ),
    Bad("peer-cn-trailing-newline", "POST", f"{ADMIN}/peers", 422, json=_peer(cn="gw.example\n")),
    Bad(
        "peer-keypair-cn-wildcard",
        "POST",
        f"{ADMIN}/peers/keypair",
        422,
        json=_peer(cn="*.example.com"),
    ),
    # Where peer add may connect: https only to public addresses (unless allowed).
    *(
        _enroll_case(case_id, f"https://{host}{ENROLL}/{{token}}")
        for case_id, host in (
            ("peer-enroll-https-private-ip", "10.0.0.1"),
            ("peer-enroll-https-link-local-ip", "169.254.169.254"),
            ("peer-enroll-https-loopback-ip", "127.0.0.1:8443"),
            ("peer-enroll-https-ipv6-loopback", "[::1]:8443"),
            ("peer-enroll-https-ipv4-mapped-private", "[::ffff:192.168.0.1]"),
            ("peer-enroll-https-unspecified", "0.0.0.0"),
        )
    ),
    _enroll_case(
        "peer-enroll-http-loopback-not-allowed", f"http://127.0.0.1:8080{ENROLL}/{{token}}"
    ),
    _enroll_case("peer-enroll-escape-in-url", f"https://gw.example.com{ENROLL}/{{token}}\x1b[2J"),
    *(
        _enroll_case(case_id, f"https://gw.example.com{ENROLL}/{{token}}", caFingerprint=value)
        for case_id, value in (
            ("peer-enroll-ca-fingerprint-short", "AB:CD:EF"),
            ("peer-enroll-ca-fingerprint-not-hex", "zz" * 32),
            ("peer-enroll-ca-fingerprint-65-hex", "a" * 65),
            ("peer-enroll-ca-fingerprint-number", 12),
            ("peer-enroll-ca-fingerprint-huge", "ab:" * 4000),
        )
    ),
]

GRANT_CASES = [
    Bad("grant-user-not-uuid", "POST", f"{ADMIN}/grants", 422, json=_grant(subjectUserId="1")),
    Bad(
        "grant-peer-sql",
        "POST",
        f"{ADMIN}/grants",
        422,
        json=_grant(peerId="' OR 1=1 --"),
    ),
    Bad(
        "grant-unknown-user",
        "POST",
        f"{ADMIN}/grants",
        404,
        json=_grant(subjectUserId=str(uuid.UUID(int=1))),
    ),
    Bad(
        "grant-unknown-peer",
        "POST",
        f"{ADMIN}/grants",
        404,
        json=_grant(peerId=str(uuid.UUID(int=2))),
    ),
    Bad("grant-scope-list", "POST", f"{ADMIN}/grants", 422, json=_grant(scope=["tasks"])),
    Bad("grant-scope-missing", "POST", f"{ADMIN}/grants", 422, json=_grant(scope=_DROP)),
    Bad("grant-scope-null", "POST", f"{ADMIN}/grants", 422, json=_grant(scope=None)),
    Bad(
        "grant-max-rows-string",
        "POST",
        f"{ADMIN}/grants",
        422,
        json=_grant(scope_max_rows_per_query="100"),
    ),
    Bad(
        "grant-max-rows-zero",
        "POST",
        f"{ADMIN}/grants",
        422,
        json=_grant(scope_max_rows_per_query=0),
    ),
    Bad(
        "grant-max-rows-huge",
        "POST",
        f"{ADMIN}/grants",
        422,
        json=_grant(scope_max_rows_per_query=10**30),
    ),
    Bad(
        "grant-unknown-resource",
        "POST",
        f"{ADMIN}/grants",
        422,
        json=_grant(scope_resources=["tasks", "passwords"]),
    ),
    Bad("grant-resources-empty", "POST", f"{ADMIN}/grants", 422, json=_grant(scope_resources=[])),
    Bad(
        "grant-resources-overlap",
        "POST",
        f"{ADMIN}/grants",
        422,
        json=_grant(scope_excluded_resources=["tasks"]),
    ),
    Bad(
        "grant-scope-extra-key",
        "POST",
        f"{ADMIN}/grants",
        422,
        json=_grant(scope_admin=True),
    ),
    Bad("grant-extra-field", "POST", f"{ADMIN}/grants", 422, json=_grant(status="active")),
    Bad("grant-get-unknown-id", "GET", f"{ADMIN}/grants/{{unknown}}", 404),
    Bad("grant-get-non-uuid", "GET", f"{ADMIN}/grants/12345", 422),
    Bad("grant-get-unicode-id", "GET", f"{ADMIN}/grants/ünïcødé", 422),
    Bad("grant-list-peer-not-uuid", "GET", f"{ADMIN}/grants?peer=x", 422),
    Bad("grant-list-unknown-status", "GET", f"{ADMIN}/grants?status=gone", 422),
    Bad("revoke-unknown-grant", "PATCH", f"{ADMIN}/grants/{{unknown}}/revoke", 404),
    Bad("revoke-non-uuid", "PATCH", f"{ADMIN}/grants/..%2F..%2Fusers/revoke", 404),
    Bad(
        "revoke-reason-number",
        "PATCH",
        f"{ADMIN}/grants/{{grant}}/revoke",
        422,
        json=lambda c: {"reason": 5},
    ),
    Bad(
        "revoke-reason-too-long",
        "PATCH",
        f"{ADMIN}/grants/{{grant}}/revoke",
        422,
        json=lambda c: {"reason": "ü" * 501},
    ),
    Bad(
        "revoke-reason-nul-byte",
        "PATCH",
        f"{ADMIN}/grants/{{grant}}/revoke",
        422,
        json=lambda c: {"reason": "because\x00"},
    ),
    Bad(
        "revoke-extra-field",
        "PATCH",
        f"{ADMIN}/grants/{{grant}}/revoke",
        422,
        json=lambda c: {"reason": "x", "status": "active"},
    ),
]


def _ttl(value: Any) -> Json:
    return lambda c: {"ttlSeconds": value}


TOKEN_MINT_CASES = [
    Bad("ttl-zero", "POST", f"{ADMIN}/grants/{{grant}}/tokens", 422, json=_ttl(0)),
    Bad("ttl-negative", "POST", f"{ADMIN}/grants/{{grant}}/tokens", 422, json=_ttl(-1)),
    Bad("ttl-901", "POST", f"{ADMIN}/grants/{{grant}}/tokens", 422, json=_ttl(901)),
    Bad("ttl-1e9-float", "POST", f"{ADMIN}/grants/{{grant}}/tokens", 422, json=_ttl(1e9)),
    Bad("ttl-huge-int", "POST", f"{ADMIN}/grants/{{grant}}/tokens", 422, json=_ttl(10**40)),
    Bad("ttl-string", "POST", f"{ADMIN}/grants/{{grant}}/tokens", 422, json=_ttl("90")),
    Bad("ttl-null", "POST", f"{ADMIN}/grants/{{grant}}/tokens", 422, json=_ttl(None)),
    Bad(
        "ttl-extra-field",
        "POST",
        f"{ADMIN}/grants/{{grant}}/tokens",
        422,
        json=lambda c: {"ttlSeconds": 60, "token": "0" * 64},
    ),
    Bad(
        "token-mint-unknown-grant",
        "POST",
        f"{ADMIN}/grants/{{unknown}}/tokens",
        404,
        json=_ttl(60),
    ),
    Bad("token-mint-non-uuid-grant", "POST", f"{ADMIN}/grants/nope/tokens", 422, json=_ttl(60)),
]

_NO_AUTH = {"Authorization": ""}

QUERY_AND_AUTH_CASES = [
    Bad("audit-grant-not-uuid", "GET", f"{ADMIN}/audit?grant=%27%20OR%201%3D1", 422),
    Bad("audit-peer-not-uuid", "GET", f"{ADMIN}/audit?peer=abc", 422),
    Bad("audit-limit-zero", "GET", f"{ADMIN}/audit?limit=0", 422),
    Bad("audit-limit-huge", "GET", f"{ADMIN}/audit?limit=99999999999999999999", 422),
    Bad("audit-limit-not-int", "GET", f"{ADMIN}/audit?limit=ten", 422),
    Bad("audit-unknown-outcome", "GET", f"{ADMIN}/audit?outcome=maybe", 422),
    Bad("admin-no-bearer", "GET", "/api/admin/users", 401, headers={"Authorization": ""}),
    Bad(
        "admin-wrong-bearer",
        "POST",
        "/api/admin/users",
        403,
        json=_user(),
        headers={"Authorization": "Bearer not-the-admin-token-at-all"},
    ),
    Bad(
        "admin-basic-auth",
        "GET",
        f"{ADMIN}/grants",
        401,
        headers={"Authorization": "Basic YWRtaW46YWRtaW4="},
    ),
    # Authentication comes before parsing: a broken body without the token learns nothing.
    *(
        Bad(case_id, method, path, 401, raw=lambda c: b'{"name": "unterminated', headers=_NO_AUTH)
        for case_id, method, path in (
            ("admin-no-auth-broken-json-user", "POST", "/api/admin/users"),
            ("admin-no-auth-broken-json-grant", "POST", f"{ADMIN}/grants"),
            ("admin-no-auth-broken-json-revoke", "PATCH", f"{ADMIN}/grants/{{grant}}/revoke"),
            ("admin-no-auth-broken-json-token", "POST", f"{ADMIN}/grants/{{grant}}/tokens"),
            ("admin-no-auth-broken-json-peer-cert", "PATCH", f"{ADMIN}/peers/{{peer}}/cert"),
        )
    ),
    Bad(
        "admin-no-auth-wrong-types",
        "POST",
        f"{ADMIN}/peers",
        401,
        json=lambda c: {"commonName": 5, "displayName": []},
        headers=_NO_AUTH,
    ),
    Bad(
        "admin-no-auth-form-body",
        "POST",
        f"{ADMIN}/peers/enroll",
        401,
        raw=lambda c: b"enrollmentUrl=x",
        content_type="application/x-www-form-urlencoded",
        headers=_NO_AUTH,
    ),
    Bad(
        "admin-wrong-bearer-broken-json",
        "POST",
        f"{ADMIN}/peers/keypair",
        403,
        raw=lambda c: b"[",
        headers={"Authorization": "Bearer not-the-admin-token-at-all"},
    ),
    Bad("admin-wrong-method", "DELETE", "/api/admin/users", 405),
    Bad("admin-unknown-route", "GET", "/api/admin/../../etc/passwd", 404),
]

CASES = [
    *CSR_CASES,
    *TOKEN_CASES,
    *REDEEM_BODY_CASES,
    *USER_CASES,
    *PEER_CASES,
    *GRANT_CASES,
    *TOKEN_MINT_CASES,
    *QUERY_AND_AUTH_CASES,
]


def test_the_corpus_is_large_and_ids_are_unique() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


async def _context(client: httpx.AsyncClient) -> Ctx:
    user = await make_user(client)
    peer = await make_peer(client)
    response = await client.post(
        f"{ADMIN}/grants",
        json={"subjectUserId": user["id"], "peerId": peer["id"], "scope": DEFAULT_SCOPE},
    )
    assert response.status_code == 201, response.text
    grant = response.json()
    token = (await make_token(client, grant["id"]))["token"]
    return Ctx(token, grant["id"], peer["id"], user["id"], user["email"], peer["commonName"])


async def _send(client: httpx.AsyncClient, case: Bad, ctx: Ctx) -> httpx.Response:
    path = case.path.format(
        token=ctx.token,
        token_upper=ctx.token.upper(),
        grant=ctx.grant,
        peer=ctx.peer,
        unknown=ctx.unknown,
    )
    headers = {"content-type": case.content_type, **case.headers}
    content: bytes | None = None
    if case.raw is not None:
        content = case.raw(ctx)
    elif case.json is not None:
        content = httpx.Request("POST", "http://x", json=case.json(ctx)).content
    return await client.request(case.method, path, content=content, headers=headers)


def _assert_one_line_reason(response: httpx.Response, case: Bad, ctx: Ctx) -> None:
    body = response.json()
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    assert isinstance(detail, str) and detail, body
    assert "\n" not in detail and "\r" not in detail and len(detail) <= 300, detail
    assert ctx.token not in detail and ctx.token.upper() not in detail
    assert not _HEX64.search(detail), detail
    assert "-----BEGIN" not in detail and "PRIVATE KEY" not in detail, detail
    if case.echo is not None:
        assert case.echo.format(token=ctx.token) not in detail, detail


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_is_a_4xx_with_one_line_and_changes_nothing(
    case: Bad, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    ctx = await _context(client)
    before = await snapshot(db_engine)

    response = await _send(client, case, ctx)

    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.status_code == case.status, response.text
    _assert_one_line_reason(response, case, ctx)
    assert await snapshot(db_engine) == before

    if case.redeem_refused:
        audit = await client.get(f"{ADMIN}/audit", params={"grant": ctx.grant, "outcome": "denied"})
        assert [a["statusCode"] for a in audit.json()] == [case.status]
        good = await client.post(f"{ENROLL}/{ctx.token}", json={"csrPem": _good(ctx)})
        assert good.status_code == 200, good.text
