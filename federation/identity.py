"""This gateway's identity: one row, made on first start, and the task queue named after it.

Gateways that share a Temporal namespace tell their runs apart by it: each serves only
its own queue, and its activities act only for runs that carry its id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.db.models import GatewayIdentity
from federation.db.session import unreachable_reason
from federation.settings import ConfigurationError

log = logging.getLogger("mosaic.identity")

QUEUE_PREFIX = "mosaic-"
RETRY_SECONDS = 3.0


async def load_gateway_id(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    """The gateway's id, created on the first call.

    Race-free: processes of one gateway starting at once all end with the same id
    (the creating transaction holds the table's write lock while it looks and inserts).
    """
    async with sessions() as session:
        found = await _first(session)
    if found is not None:
        return found
    async with sessions() as session, session.begin():
        await _lock_table(session)
        found = await _first(session)
        if found is None:
            created = GatewayIdentity(id=uuid.uuid4())
            session.add(created)
            await session.flush()
            found = created.id
            log.info("this gateway's identity is new: %s", found)
    return found


async def _first(session: AsyncSession) -> uuid.UUID | None:
    # Ordered, so that even a database restored with two rows names one gateway.
    query = select(GatewayIdentity.id).order_by(GatewayIdentity.created_at, GatewayIdentity.id)
    found: uuid.UUID | None = (await session.execute(query.limit(1))).scalar_one_or_none()
    return found


async def _lock_table(session: AsyncSession) -> None:
    """Hold the identity table's write lock until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        # Conflicts with itself, not with readers.
        await session.execute(text("LOCK TABLE mosaic_gateway IN SHARE ROW EXCLUSIVE MODE"))
    else:
        # SQLite: a first statement that writes takes the database's write lock (a waiting
        # writer retries under busy_timeout and then reads what the first one committed).
        await session.execute(text("DELETE FROM mosaic_gateway WHERE 1 = 0"))


async def gateway_id_when_up(
    sessions: async_sessionmaker[AsyncSession],
    *,
    setting: str = "DATABASE_URL",
    retry_seconds: float = RETRY_SECONDS,
) -> uuid.UUID:
    """``load_gateway_id``, waiting while the database is unreachable (one warning line per
    attempt); an unmigrated database is a ``ConfigurationError``. Cancelling stops the wait."""
    while True:
        try:
            return await load_gateway_id(sessions)
        except (DBAPIError, OSError) as exc:
            reason = unreachable_reason(exc)
            if reason is None:
                raise ConfigurationError(
                    f"cannot read this gateway's identity from the database at {setting}"
                    f" ({_first_line(exc)}); run `mosaic db upgrade`"
                ) from None
            log.warning(
                "waiting for the database (%s): %s; retrying in %gs", setting, reason, retry_seconds
            )
        await asyncio.sleep(retry_seconds)


def _first_line(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    lines = str(cause).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def task_queue_for(gateway_id: uuid.UUID, configured: str = "") -> str:
    """The queue this gateway's runs go to: ``MOSAIC_TASK_QUEUE`` when set, else
    ``mosaic-<first 12 hex of the gateway id>`` (unique per gateway, so two gateways on
    one namespace never share a queue by default)."""
    return configured or f"{QUEUE_PREFIX}{gateway_id.hex[:12]}"
