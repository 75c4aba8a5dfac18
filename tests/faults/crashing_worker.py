"""A real Mosaic worker process that SIGKILLs itself at one point of the redeem saga.

    python -m tests.faults.crashing_worker --point after_claim

Settings come from the environment, like ``mosaic gateway worker``. The worker
is ``workflows.worker.build_worker``; an activity interceptor (it sees local
activities too) kills the process:

- ``before:<activity>`` as that activity starts, ``after:<activity>`` once it
  has returned but before its result is reported (to Temporal, or for a local
  activity to the workflow task that would record it);
- or one of the named saga points in ``POINTS``.

A local activity runs inside a workflow task, so a crash there loses every
unrecorded local result of that task: the next worker re-runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from typing import Any

from temporalio import activity
from temporalio import client as temporal_client
from temporalio.client import Client
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from federation.ca.factory import ca_from_settings
from federation.db.session import make_engine, make_sessionmaker
from federation.identity import load_gateway_id
from federation.logredact import install_redaction
from federation.settings import load_settings
from workflows.worker import build_worker, remote_settings, sealer_from_settings

# saga point -> (when, activity type)
POINTS: dict[str, tuple[str, str]] = {
    "before_claim": ("before", "redeem.validate_and_claim"),
    # claim done, its local result not yet recorded (the task that records it is lost)
    "claim_unrecorded": ("after", "redeem.validate_and_claim"),
    "after_claim": ("before", "certificates.certify"),
    # step-ca signed (and the certificate checked), the completion never reaches Temporal
    "issue_unreported": ("after", "certificates.certify"),
    "after_issue": ("before", "redeem.activate"),
    "after_activate": ("after", "redeem.activate"),
}

CRASH_MARK = "CRASH-POINT-REACHED"
READY_MARK = "WORKER-POLLING"


def parse_point(point: str) -> tuple[str, str]:
    if point in POINTS:
        return POINTS[point]
    when, _, name = point.partition(":")
    if when not in ("before", "after") or not name:
        raise SystemExit(f"unknown crash point {point!r}")
    return when, name


def _die(point: str, activity_type: str, result: Any = None) -> None:
    info = activity.info()
    serial = getattr(result, "serial", None)
    print(
        f"{CRASH_MARK} {point} {activity_type} attempt={info.attempt} local={info.is_local}"
        + (f" serial={serial}" if serial else ""),
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGKILL)


class CrashAt(temporal_client.Interceptor, Interceptor):
    """A client interceptor too, so ``Client.connect`` takes it and workers inherit it."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.when, self.activity_type = parse_point(point)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Crashing(next, self)


class _Crashing(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, crash: CrashAt) -> None:
        super().__init__(next)
        self._crash = crash

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        target = name == self._crash.activity_type
        if target and self._crash.when == "before":
            _die(self._crash.point, name)
        result = await self.next.execute_activity(input)
        if target and self._crash.when == "after":
            _die(self._crash.point, name, result)
        return result


async def run(point: str) -> None:
    settings = load_settings()
    install_redaction()
    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=[CrashAt(point)],
    )
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    worker = build_worker(
        client,
        gateway_id=await load_gateway_id(sessions),
        task_queue=settings.mosaic_task_queue,
        sessions=sessions,
        ca=ca_from_settings(settings),
        sealer=sealer_from_settings(settings),
        remote=remote_settings(settings),
        workflow_failure_exception_types=[Exception],
    )
    try:
        async with worker:
            print(f"{READY_MARK} {settings.mosaic_task_queue}", flush=True)
            await asyncio.Event().wait()
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--point", required=True, help="a saga point or before:/after:<activity>")
    args = parser.parse_args(argv)
    parse_point(args.point)
    try:
        asyncio.run(run(args.point))
    except KeyboardInterrupt:
        pass
    gc.collect()  # sdk-python#300: avoid a crash at interpreter exit
    sys.exit(0)


if __name__ == "__main__":
    main()
