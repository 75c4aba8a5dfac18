"""The process's open-files limit: raised at start, and shared between client
connections and everything else the process keeps open."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("mosaic.api.openfiles")

# Descriptors kept back from client connections for the rest of the process.
# Measured on `mosaic gateway run` (API + worker, built-in CA): 18 open when idle
# (stdio, log, epolls and eventfds of the loop and Temporal's runtime, Temporal's
# gRPC sockets, the listener); at the peak of 60 concurrent enrollments 60 on SQLite
# (db and -wal per pooled connection) and 43 on PostgreSQL. The two engines' pools
# top out at 60 (SQLite 2 x 15 x 2 files, PostgreSQL 2 x 30 sockets); step-ca and
# peer calls add outbound sockets. 128 covers that with room to spare; if it is ever
# exceeded, accept() fails with EMFILE and asyncio retries a second later.
FD_RESERVE = 128


def open_files_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> int | None:
    """Raise the soft open-files limit to the hard limit where allowed; log what it is now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # e.g. macOS refuses RLIM_INFINITY: keep the soft limit we have
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info("open files limit %s (was %s, hard limit %s)", _show(soft), _show(before), _show(hard))
    return None if soft == resource.RLIM_INFINITY else soft


def connection_budget(soft_limit: int | None, reserve: int = FD_RESERVE) -> int | None:
    """How many client connections the process may hold: the limit minus the reserve,
    but never less than half the limit (a tiny limit still serves something)."""
    if soft_limit is None:
        return None
    return max(soft_limit - reserve, soft_limit // 2, 1)


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
