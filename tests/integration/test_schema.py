"""The lane's database, migrated by Alembic, matches the models (PostgreSQL and SQLite)."""

from __future__ import annotations

import asyncio

from alembic import command

from federation.db.migrate import alembic_config


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    # env.py runs its own event loop: off this one.
    await asyncio.to_thread(command.check, alembic_config(database_url))
