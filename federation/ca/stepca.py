"""step-ca as a ``CertificateAuthority``: JWK provisioner, one-time tokens, pinned root.

Every call mints a fresh OTT: step-ca burns a token (its ``jti``) before it
looks at the CSR, and refuses tokens issued before it started, so a token is
never cached or reused across retries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.ca.base import IssuedCertificate, IssueRequest, checked_id, checked_serial
from federation.ca.stepca_init import jwk_thumbprint
from federation.errors import CARefused, CAUnavailable
from federation.pki.fields import common_names

logger = logging.getLogger(__name__)

_UNREACHABLE = "certificate authority unreachable"
_REFUSED = "certificate authority refused the request"
_TOKEN_LIFETIME_SECONDS = 300
_HEX_SERIAL = re.compile(r"[0-9a-f]+")
_SHA256 = hashes.SHA256()


class StepCAConfigError(ValueError):
    """A constructor argument step-ca cannot work with; ``argument`` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class StepCA:
    """Issue and revoke through a step-ca JWK provisioner over HTTPS."""

    name = "step-ca"

    def __init__(
        self,
        url: str,
        provisioner_key_json: str,
        root_cert_path: Path,
        provisioner_name: str = "mosaic-fed",
        timeout: float = 5.0,
        lifetime_seconds: int = 24 * 3600,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise StepCAConfigError("url", "step-ca URL must be https://host[:port]")
        self._url = f"https://{parts.netloc}{parts.path.rstrip('/')}"
        self._provisioner_name = provisioner_name
        self._lifetime = f"{int(lifetime_seconds)}s"
        try:
            self._key, self._kid = _load_provisioner_key(provisioner_key_json)
        except ValueError as exc:
            raise StepCAConfigError("provisioner_key_json", str(exc)) from None
        try:
            self._roots = x509.load_pem_x509_certificates(Path(root_cert_path).read_bytes())
        except OSError as exc:
            reason = f"cannot read {root_cert_path}: {exc.strerror or type(exc).__name__}"
            raise StepCAConfigError("root_cert_path", reason) from None
        except ValueError:
            reason = f"{root_cert_path} holds no PEM certificate"
            raise StepCAConfigError("root_cert_path", reason) from None
        # cafile= alone means no system CAs: only our root can vouch for the CA.
        tls = ssl.create_default_context(cafile=str(root_cert_path))
        self._client = httpx.AsyncClient(base_url=self._url, verify=tls, timeout=timeout)

    @property
    def url(self) -> str:
        return self._url

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> StepCA:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        grant_id = checked_id(request.grant_id, "grant id")
        subject_user_id = checked_id(request.subject_user_id, "subject user id")
        serial = checked_serial(request.serial)
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError, AttributeError):
            raise CARefused("CSR could not be parsed") from None
        common_name = _common_name(csr)
        sans = _sans(csr) or [common_name]
        csr_der = csr.public_bytes(serialization.Encoding.DER)

        ott = self._token(
            audience=f"{self._url}/1.0/sign",
            subject=common_name,
            extra={
                "sans": sans,
                # Ignored by 0.19, enforced by newer step-ca: binds the token to this CSR.
                "cnf": {"x5rt#S256": _b64url(hashlib.sha256(csr_der).digest())},
                "mosaic_grant_id": grant_id,
                "mosaic_subject_user_id": subject_user_id,
                # federation.tpl sets the certificate's serial from it (decimal).
                "mosaic_serial": str(serial),
            },
        )
        payload = {"csr": request.csr_pem, "ott": ott, "notAfter": self._lifetime}
        body = await self._post("/1.0/sign", payload, ott)
        issued = _issued_certificate(body, self._roots)
        logger.info(
            "step-ca issued certificate",
            extra={"serial": issued.serial, "grant_id": grant_id, "common_name": common_name},
        )
        return issued

    async def revoke(self, serial: str, *, reason: str) -> None:
        if not isinstance(serial, str) or not _HEX_SERIAL.fullmatch(serial):
            raise CARefused("serial must be lowercase hex without a 0x prefix")
        # step-ca keys its certificate and revocation tables by the decimal serial.
        decimal_serial = str(int(serial, 16))
        ott = self._token(audience=f"{self._url}/1.0/revoke", subject=decimal_serial, extra={})
        payload = {
            "serial": decimal_serial,
            "ott": ott,
            "passive": True,
            "reasonCode": 0,
            "reason": reason,
        }
        try:
            await self._post("/1.0/revoke", payload, ott)
        except CARefused as exc:
            # A retried revoke after a lost response must not fail the compensation.
            if exc.cause is not None and "already revoked" in exc.cause:
                logger.info("step-ca serial already revoked", extra={"serial": serial})
                return
            raise
        logger.info("step-ca revoked certificate", extra={"serial": serial})

    def root_certificates(self) -> list[x509.Certificate]:
        return list(self._roots)

    async def check_health(self) -> None:
        try:
            response = await self._client.get("/health")
        except httpx.HTTPError as exc:
            raise CAUnavailable(_UNREACHABLE, cause=_describe(exc)) from None
        if response.status_code != 200:
            raise CAUnavailable(_UNREACHABLE, cause=f"/health answered HTTP {response.status_code}")

    def _token(self, *, audience: str, subject: str, extra: dict[str, Any]) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._provisioner_name,
            "aud": audience,
            "sub": subject,
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now,
            "exp": now + _TOKEN_LIFETIME_SECONDS,
            **extra,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._kid})

    async def _post(self, path: str, payload: dict[str, Any], ott: str) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=payload)
        except httpx.HTTPError as exc:
            raise CAUnavailable(_UNREACHABLE, cause=_scrub(_describe(exc), ott)) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = response.json()
            except ValueError:
                raise CAUnavailable(
                    _UNREACHABLE, cause=f"{path} answered HTTP {status} with a non-JSON body"
                ) from None
            if not isinstance(body, dict):
                raise CAUnavailable(_UNREACHABLE, cause=f"{path} answered HTTP {status} non-object")
            return body
        cause = _scrub(f"{path} answered HTTP {status}: {_ca_message(response)}", ott)
        if 400 <= status < 500:
            raise CARefused(_REFUSED, cause=cause)
        raise CAUnavailable(_UNREACHABLE, cause=cause)


def _load_provisioner_key(provisioner_key_json: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    # Errors here never chain the parser's exception: it can quote the key text.
    try:
        jwk = json.loads(provisioner_key_json)
    except ValueError:
        raise ValueError("provisioner key is not valid JSON") from None
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("provisioner key must be a P-256 EC JWK")
    if "d" not in jwk:
        raise ValueError("provisioner key must be the private JWK (missing 'd')")
    try:
        key = jwt.algorithms.ECAlgorithm.from_jwk(jwk)
    except (jwt.exceptions.InvalidKeyError, ValueError, KeyError):
        raise ValueError("provisioner key is not a usable EC JWK") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("provisioner key must be the private JWK")
    kid = jwk.get("kid") or jwk_thumbprint(jwk)
    return key, str(kid)


def _common_name(csr: x509.CertificateSigningRequest) -> str:
    try:
        names = common_names(csr.subject)
    except ValueError:
        raise CARefused("CSR subject could not be parsed") from None
    if not names or not names[0]:
        raise CARefused("CSR has no common name; step-ca needs it as the token subject")
    return names[0]


def _sans(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CARefused("CSR extensions could not be parsed") from None
    sans: list[str] = []
    for name in ext.value:
        if isinstance(name, x509.DNSName | x509.RFC822Name | x509.UniformResourceIdentifier):
            sans.append(name.value)
        elif isinstance(name, x509.IPAddress):
            sans.append(str(name.value))
        else:
            # step-ca's `sans` claim can only express DNS, IP, email and URI.
            raise CARefused(f"CSR has a SAN type step-ca cannot authorise: {type(name).__name__}")
    return sans


def _issued_certificate(body: dict[str, Any], roots: list[x509.Certificate]) -> IssuedCertificate:
    try:
        leaf = x509.load_pem_x509_certificate(str(body["crt"]).encode("ascii"))
        raw_chain = body.get("certChain") or [body["ca"]]
        chain = [x509.load_pem_x509_certificate(str(pem).encode("ascii")) for pem in raw_chain]
    except (KeyError, ValueError, TypeError):
        # A garbled 2xx is a fault of the CA (or a proxy before it), not a refusal.
        raise CAUnavailable(
            _UNREACHABLE, cause="/1.0/sign answered 2xx without a readable certificate"
        ) from None
    excluded = {leaf.fingerprint(_SHA256)} | {root.fingerprint(_SHA256) for root in roots}
    intermediates: list[x509.Certificate] = []
    for cert in chain:
        fingerprint = cert.fingerprint(_SHA256)
        if fingerprint not in excluded:
            excluded.add(fingerprint)
            intermediates.append(cert)
    pem = serialization.Encoding.PEM
    return IssuedCertificate(
        cert_pem=leaf.public_bytes(pem).decode("ascii"),
        chain_pem="".join(cert.public_bytes(pem).decode("ascii") for cert in intermediates),
        serial=format(leaf.serial_number, "x"),
    )


def _ca_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text[:200]


def _describe(exc: Exception) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _scrub(text: str, ott: str) -> str:
    return text.replace(ott, "[ott]")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
