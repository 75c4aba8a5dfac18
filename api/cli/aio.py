"""Running a coroutine from a command."""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

from federation.db.aio import run_settled

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` (``run_settled``: the loop outlives aiosqlite's threads), then a
    collection while the interpreter is whole.

    The Temporal SDK's core can abort at interpreter exit (PyGILState_Release,
    sdk-python#300) when its objects are finalised late; collecting here avoids it.
    """
    try:
        return run_settled(coro)
    finally:
        gc.collect()
