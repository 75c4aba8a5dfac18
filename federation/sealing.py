"""Sealing of secrets at rest (peer client keys) with AES-256-GCM.

A sealed blob is ``v1:<key id>:<base64url(nonce || ciphertext+tag)>``. The key
id names the secret that sealed it without revealing anything about the key,
and the AAD binds the blob to its row, so a blob copied to another peer row
does not open.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from federation.pki.fingerprints import fingerprint_sha256

_VERSION = "v1"
_SALT = b"mosaic-federation-sealing-v1"
_INFO = b"peer-client-key"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_MIN_SECRET_CHARS = 16
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_SEALED = re.compile(r"v1:[0-9a-f]{8}:[A-Za-z0-9_-]+")


class SealedBlobError(Exception):
    """A sealed blob could not be opened; the message never holds key material."""


class Sealer:
    """Seals and opens blobs under a key derived from one secret string."""

    def __init__(self, secret: str) -> None:
        if not isinstance(secret, str) or len(secret) < _MIN_SECRET_CHARS:
            raise ValueError(f"sealing secret must be at least {_MIN_SECRET_CHARS} characters")
        key = HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=_SALT, info=_INFO).derive(
            secret.encode("utf-8")
        )
        self._aead = AESGCM(key)
        self._key_id = fingerprint_sha256(key)[:8]

    def __repr__(self) -> str:
        return f"Sealer(key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        """First 8 hex chars of SHA-256 of the derived key: names the secret, reveals nothing."""
        return self._key_id

    def seal(self, plaintext: bytes, *, aad: str) -> str:
        """Encrypt ``plaintext`` bound to ``aad`` (the owning row, e.g. the peer id)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, plaintext, aad.encode("utf-8"))
        body = base64.urlsafe_b64encode(nonce + ciphertext).rstrip(b"=").decode("ascii")
        return f"{_VERSION}:{self._key_id}:{body}"

    def open(self, blob: str, *, aad: str) -> bytes:
        """Decrypt a blob from ``seal``; raise ``SealedBlobError`` if it does not open."""
        key_id, payload = _split(blob)
        if not hmac.compare_digest(key_id, self._key_id):
            raise SealedBlobError(f"sealed with a different secret (key id {key_id})")
        nonce, ciphertext = payload[:_NONCE_BYTES], payload[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, aad.encode("utf-8"))
        except InvalidTag:
            raise SealedBlobError(
                "sealed blob failed authentication (tampered, or bound to another record)"
            ) from None

    @staticmethod
    def is_sealed(value: str) -> bool:
        """Return whether ``value`` has the shape of a sealed blob (no key needed)."""
        return is_sealed(value)


def is_sealed(value: str) -> bool:
    """Return whether ``value`` has the shape of a sealed blob (no key needed)."""
    return isinstance(value, str) and _SEALED.fullmatch(value) is not None


def reseal(blob: str, *, aad: str, old: Sealer, new: Sealer) -> str:
    """Re-encrypt ``blob`` from ``old``'s secret to ``new``'s, keeping the AAD.

    A blob already sealed by ``new`` is checked and returned unchanged, so a
    rotation that stopped halfway can simply be run again.
    """
    key_id, _ = _split(blob)
    if hmac.compare_digest(key_id, new.key_id):
        new.open(blob, aad=aad)
        return blob
    return new.seal(old.open(blob, aad=aad), aad=aad)


def _split(blob: str) -> tuple[str, bytes]:
    """Return (key id, nonce || ciphertext) of a well-formed blob."""
    if not isinstance(blob, str):
        raise SealedBlobError("sealed blob is not a string")
    parts = blob.split(":")
    if len(parts) != 3:
        raise SealedBlobError("sealed blob has an unknown format")
    version, key_id, body = parts
    if version != _VERSION:
        raise SealedBlobError("sealed blob version is not supported")
    if _KEY_ID.fullmatch(key_id) is None or _BASE64URL.fullmatch(body) is None:
        raise SealedBlobError("sealed blob has an unknown format")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise SealedBlobError("sealed blob has an unknown format") from None
    if len(payload) < _NONCE_BYTES + _TAG_BYTES:
        raise SealedBlobError("sealed blob is truncated")
    return key_id, payload
