"""Turn domain errors into Temporal application errors: ``type`` is the contract."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from federation.errors import FederationError

log = logging.getLogger("mosaic.activities")
P = ParamSpec("P")
R = TypeVar("R")


def domain_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Re-raise ``FederationError`` as ``ApplicationError(type=kind)``.

    Only the safe message enters workflow history; the cause goes to the log.
    Other exceptions (a dropped database connection, say) stay retryable. A retryable
    error of a local activity whose next attempt would start past its schedule-to-close
    budget is final (see ``budget_spent``).
    """

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except FederationError as exc:
            if exc.cause:
                log.info("%s: %s (%s)", fn.__name__, exc.kind, exc.cause)
            final = not exc.retryable or budget_spent()
            raise ApplicationError(exc.message, type=exc.kind, non_retryable=final) from None

    return wrapper


def budget_spent() -> bool:
    """Whether a local activity's next attempt would start after its schedule-to-close
    budget ran out. The server holds a regular activity's retries to that budget; the SDK
    (temporalio 1.35) does not hold a local activity's, so the step does it here, from the
    time the step was first scheduled and the retry policy's next backoff."""
    if not activity.in_activity():
        return False
    info = activity.info()
    budget, policy = info.schedule_to_close_timeout, info.retry_policy
    if not info.is_local or budget is None or policy is None:
        return False
    backoff = policy.initial_interval * policy.backoff_coefficient ** (info.attempt - 1)
    if policy.maximum_interval is not None:
        backoff = min(backoff, policy.maximum_interval)
    return datetime.now(UTC) + backoff >= info.scheduled_time + budget
