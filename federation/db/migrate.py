"""Apply Alembic migrations programmatically (``mosaic db upgrade``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from federation.db.session import unreachable_reason
from federation.db.urls import checked_database_url, database_url_without_password
from federation.settings import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseUnreachable(ConfigurationError):
    """No connection to ``DATABASE_URL``; the message names it, never the password."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database to ``revision``; safe to call repeatedly.

    A URL we cannot use or a database we cannot reach is a ``ConfigurationError``
    in one line naming ``DATABASE_URL``; anything else a migration raises is a bug.
    """
    try:
        url = checked_database_url(database_url)
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: DATABASE_URL: {exc}") from None
    try:
        command.upgrade(alembic_config(url), revision)
    except Exception as exc:
        reason = unreachable_reason(exc)
        if reason is None:
            raise
        shown = database_url_without_password(url)
        raise DatabaseUnreachable(
            f"cannot reach the database {shown} (DATABASE_URL): {reason}"
        ) from None


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    # env.py runs its own event loop, so it needs a thread of its own.
    await asyncio.to_thread(upgrade, database_url, revision)
