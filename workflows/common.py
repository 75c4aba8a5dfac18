"""What every Mosaic workflow shares: the search attributes ops filter by, and the
retry policies of database steps."""

from __future__ import annotations

from collections.abc import Container
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from workflows.deadlines import STEP_TIMED_OUT

GRANT_ID = SearchAttributeKey.for_keyword("GrantId")
PEER_ID = SearchAttributeKey.for_keyword("PeerId")
OUTCOME = SearchAttributeKey.for_keyword("EnrollmentOutcome")

# A short database step: retried quickly a few times, then the failure is real.
# (Domain errors are raised non-retryable by the activities and never retried.)
SHORT_STEP = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=5,
)
# A step that must land eventually (activation, compensations): retry until the database is back.
UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)

# The CA call: fast retries of an unreachable CA until the caller's deadline; a refusal is final.
CA_CALL = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=["CARefused"],
)
# Verification is pure computation: a second attempt covers a busy worker, more would not help.
VERIFY_STEP = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=2)


def failure_of(
    err: ActivityError | ApplicationError, *, kinds: Container[str], ca_step: bool, step: str
) -> tuple[str, str]:
    """(failure kind, safe message) of a failed step.

    A domain error keeps its own kind (when ``kinds`` knows it). A timeout means what the
    step that ran out of time says: only the CA step, whose last attempt hung
    (``StepTimedOut``) or failed at the CA (unreachable, 5xx), is a CA outage; a step that
    never got a worker in time, or a database or verification step, is ``Unavailable``. A
    local activity's failure can surface as the bare ApplicationError, a regular one
    wrapped. (A local activity times itself out, ``workflows.deadlines``; the
    ``TimeoutError`` branch is for regular activities and histories from before.)
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type in kinds:
        return str(cause.type), cause.message
    if ca_step and (_hung(cause) or (isinstance(cause, TimeoutError) and _ca_failed_last(cause))):
        return "CAUnavailable", "certificate authority unreachable; try again later"
    return "Unavailable", f"could not complete ({step}); try again later"


def _hung(failure: BaseException | None) -> bool:
    return isinstance(failure, ApplicationError) and failure.type == STEP_TIMED_OUT


def _ca_failed_last(timeout: TimeoutError) -> bool:
    last = timeout.cause
    if isinstance(last, ApplicationError):
        return last.type in ("CAUnavailable", STEP_TIMED_OUT)
    return isinstance(last, TimeoutError)
