"""Local activities end themselves before the SDK's deadline, and retry as new attempts.

Two things temporalio 1.35 (its core) does with a local activity, both seen on the real
server (``tests/faults/test_local_deadlines.py``):

- Its start-to-close timer is not restarted when an attempt fails and is retried in
  place: the retries share the first attempt's window, and the attempt running when it
  closes is timed out however young it is.
- A local activity timed out by core can stall its run: core answers the timeout, then
  the late completion of the cancelled attempt ("Tried to complete untracked local
  activity"), and when a workflow-task heartbeat falls between the two the next task
  fails with a nondeterminism error ("Missing associated machine for LocalActivity")
  until the workflow-task timeout. Such a history does not replay either
  (``tests/workflows/sdk_limits/``).

So ``LocalDeadlines``, on the worker (and the replayer):

- ends every local activity attempt ``MARGIN`` before core would, as an ordinary failure
  of type ``StepTimedOut`` that the step's retry policy retries and
  ``workflows.common.failure_of`` classifies, without waiting for the cancelled attempt
  to clean up; core times one out only if the worker's event loop is held up for longer
  than the margin;
- schedules the retries of a local activity through a workflow timer
  (``local_retry_threshold``), so that each attempt is scheduled afresh and gets the whole
  start-to-close it was given. Retries cost a workflow task each; a run that does not
  fail pays nothing. A step that sets its own threshold keeps its retries in place: the
  CA step, whose retries are held to a schedule-to-close budget counted from its first
  schedule (``activities.errors.budget_spent``).

Regular activities keep the server's timeouts, which have neither problem.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from activities.errors import budget_spent

STEP_TIMED_OUT = "StepTimedOut"
# How long before core's own deadline an attempt gives up: well over a busy event loop's
# lag, and a small part of our shortest start-to-close (5 s).
MARGIN = timedelta(seconds=1)
# Any backoff longer than this goes through a workflow timer (every backoff of ours).
RETRY_AS_NEW_SCHEDULE = timedelta(milliseconds=1)


class LocalDeadlines(Interceptor):
    """The worker's and the replayer's keeper of local-activity deadlines (module doc)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Deadline(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _RetryingInbound


class _RetryingInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_RetryingOutbound(outbound))


class _RetryingOutbound(WorkflowOutboundInterceptor):
    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        if input.local_retry_threshold is None:
            input.local_retry_threshold = RETRY_AS_NEW_SCHEDULE
        return super().start_local_activity(input)


class _Deadline(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        end = _end_of_attempt(info) if info.is_local else None
        if end is None:
            return await self.next.execute_activity(input)
        if end.within <= timedelta(0):
            # Retried in place past its window: core would time this attempt out.
            raise _timed_out(info, end, final=True)
        # The attempt runs as a task of its own, so that the answer does not wait for its
        # clean-up once cancelled: a session closing on a database that hangs would hold
        # it past core's deadline. Every activity is safe to run twice (ARCHITECTURE).
        attempt = asyncio.ensure_future(self.next.execute_activity(input))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=end.within.total_seconds())
        except asyncio.CancelledError:  # cancelled by the SDK (worker shutdown, say)
            attempt.cancel()
            raise
        if attempt in done:
            return attempt.result()
        attempt.cancel()
        attempt.add_done_callback(_drain)
        raise _timed_out(info, end, final=end.last or budget_spent())


@dataclass(frozen=True)
class _End:
    within: timedelta  # how long the attempt may still run
    timeout: timedelta  # the timeout that sets it, named in the failure
    last: bool  # the step's schedule-to-close budget: no attempt comes after this one


def _end_of_attempt(info: activity.Info) -> _End | None:
    """``MARGIN`` before the earlier of core's start-to-close deadline (counted, as core
    counts it, from ``current_attempt_scheduled_time``) and the step's schedule-to-close
    deadline."""
    now = datetime.now(UTC)
    ends = []
    if info.start_to_close_timeout:
        timeout = info.start_to_close_timeout
        ends.append(_End(info.current_attempt_scheduled_time + timeout - now, timeout, last=False))
    if info.schedule_to_close_timeout:
        budget = info.schedule_to_close_timeout
        ends.append(_End(info.scheduled_time + budget - now, budget, last=True))
    if not ends:
        return None
    end = min(ends, key=lambda e: (e.within, not e.last))
    return _End(end.within - MARGIN, end.timeout, end.last)


def _drain(attempt: asyncio.Future[Any]) -> None:
    """Collect what an abandoned attempt ended with, so asyncio does not log it as lost."""
    if not attempt.cancelled():
        attempt.exception()


def _timed_out(info: activity.Info, end: _End, *, final: bool) -> ApplicationError:
    return ApplicationError(
        f"{info.activity_type} did not finish within {end.timeout.total_seconds():g}s",
        type=STEP_TIMED_OUT,
        non_retryable=final,
    )
