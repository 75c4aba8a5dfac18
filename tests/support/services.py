"""Real services for the tests. A service that cannot be found fails the run: nothing skips."""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

PG_ADMIN_DSN = os.environ.get("MOSAIC_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def require(condition: bool, message: str) -> None:
    """Fail (never skip) when a real service is missing, locally and in CI alike."""
    if not condition:
        pytest.fail(
            f"{message} (CI={os.environ.get('CI', 'false')}); run `make test`", pytrace=False
        )


async def create_pg_database() -> tuple[str, str]:
    """Create a throwaway database; return (its name, its SQLAlchemy asyncpg URL)."""
    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require(False, f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
        raise
    name = f"mosaic_test_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
