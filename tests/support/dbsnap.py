"""Raw database reads for assertions (what is really stored, not what the API says)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TABLES = ("users", "federation_peers", "federation_grants", "federation_enrollment_tokens")


async def fetch_all(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return [dict(row._mapping) for row in result]


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every non-audit table, for 'nothing changed' assertions."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
            out[table] = sorted(tuple(str(v) for v in r) for r in rows)
    return out
