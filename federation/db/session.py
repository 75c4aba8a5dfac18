"""Engine and session factory for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

import socket
import time

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from federation.db.urls import normalize_database_url

# SQLSTATE classes that mean "no usable connection": connection exception, bad login,
# unknown database, too many connections, server shutting down or starting.
_UNREACHABLE_SQLSTATES = ("08", "28", "3D000", "53300", "57P")
# SQLite primary result codes for a file that cannot be opened or read.
_SQLITE_UNOPENABLE = (14, 10)  # SQLITE_CANTOPEN, SQLITE_IOERR


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    """Create an async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_use_lifo=True)
    event.listen(engine.sync_engine, "checkin", _returned)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


# A pooled connection used again within this many seconds is not pinged first. asyncpg's
# ping is three round trips (BEGIN, an empty statement, ROLLBACK), and a redeem checks a
# connection out seven times, two in the API and five in the worker (docs/benchmarks.md),
# so pinging on every checkout cost it 21 round trips. One idle longer is
# pinged and, if dead, replaced before anyone sees it. A database that goes away within
# the window fails the statement that meets it; SQLAlchemy then drops every pooled
# connection, the activity retries, and the API answers 503 "database unavailable".
PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED = "mosaic_returned_at"


def _returned(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info[_RETURNED] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    returned = record.info.get(_RETURNED)
    if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
        return  # new, or back in the pool a moment ago
    try:
        dbapi_connection.ping()
    except Exception as dead:
        # The pool discards this connection and checks out another (a new one if need be).
        raise DisconnectionError(f"pooled connection is dead: {dead}") from dead


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def unreachable_reason(exc: BaseException) -> str | None:
    """Why no connection to the database could be had, or None if ``exc`` is about else.

    The driver raises ``OSError`` as is (refused, unknown host, timeout); SQLAlchemy
    wraps what the server or SQLite answered.
    """
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, OSError):
        return (exc.strerror or type(exc).__name__).lower()
    if not isinstance(exc, DBAPIError):
        return None
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
    if (
        exc.connection_invalidated
        or sqlstate.startswith(_UNREACHABLE_SQLSTATES)
        or (isinstance(sqlite_code, int) and sqlite_code & 0xFF in _SQLITE_UNOPENABLE)
    ):
        lines = str(exc.orig).strip().splitlines()
        return lines[0] if lines else "unreachable"
    return None
