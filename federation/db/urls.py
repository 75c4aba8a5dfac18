"""``DATABASE_URL`` as people write it, and as the engine, Alembic and messages need it.

Kept free of SQLAlchemy imports: the settings use it, and every command loads them.
"""

from __future__ import annotations

import re

# The gateway is async end to end: a bare scheme means the async driver we ship.
_ASYNC_SCHEMES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
_SUPPORTED = ("postgresql+asyncpg", "sqlite+aiosqlite")
_PASSWORD = re.compile(r"^(?P<head>[^:/]+://[^:@/]*):.*@")


def normalize_database_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` become asyncpg, ``sqlite://`` aiosqlite."""
    scheme, separator, rest = url.partition("://")
    driver = _ASYNC_SCHEMES.get(scheme.lower())
    if separator and driver:
        return f"{driver}://{rest}"
    return url


def checked_database_url(url: str) -> str:
    """The normalized URL, or ``ValueError`` when it names a database we do not run on."""
    normalized = normalize_database_url(url)
    if normalized.partition("://")[0].lower() not in _SUPPORTED:
        raise ValueError("must be postgresql://user@host/db (asyncpg) or sqlite+aiosqlite:///path")
    return normalized


def database_url_without_password(url: str) -> str:
    """The URL to show in a message: user, host and database, never the password."""
    return _PASSWORD.sub(r"\g<head>@", url, count=1)
