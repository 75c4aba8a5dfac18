"""Turn domain errors into Temporal application errors: ``type`` is the contract."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from federation.errors import FederationError

log = logging.getLogger("mosaic.activities")
P = ParamSpec("P")
R = TypeVar("R")


def domain_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Re-raise ``FederationError`` as ``ApplicationError(type=kind)``.

    Only the safe message enters workflow history; the cause goes to the log.
    Other exceptions (a dropped database connection, say) stay retryable.
    """

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except FederationError as exc:
            if exc.cause:
                log.info("%s: %s (%s)", fn.__name__, exc.kind, exc.cause)
            raise ApplicationError(
                exc.message, type=exc.kind, non_retryable=not exc.retryable
            ) from None

    return wrapper
