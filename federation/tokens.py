"""Enrollment tokens: 32 random bytes as hex, shown once, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_BYTES = 32
MAX_TTL_SECONDS = 900
_TOKEN_RE = re.compile(r"[0-9a-f]{64}")


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_well_formed(token: str) -> bool:
    return _TOKEN_RE.fullmatch(token) is not None


def log_id(token_hash: str) -> str:
    """The only form of a token that may reach a log line: 8 chars of its hash."""
    return token_hash[:8]


def enrollment_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/api/federation/enrollment/{token}"
