"""The Temporal worker: registers workflows and activities bound to the database and CA."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Interceptor, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.certificates import CertificateActivities
from activities.lifecycle import LifecycleActivities
from activities.peer_add import PeerAddActivities, RemoteSettings
from activities.reconcile import ReconcileActivities
from activities.redeem import RedeemActivities
from activities.renew import RenewActivities
from activities.revoke import RevokeActivities
from federation.ca.base import CertificateAuthority
from federation.ca.factory import ca_from_settings
from federation.db.session import make_engine, make_sessionmaker
from federation.identity import gateway_id_when_up, task_queue_for
from federation.logredact import install_redaction
from federation.logsetup import context_providers
from federation.outbound import Channels
from federation.remote_url import AddressPolicy
from federation.sealing import Sealer
from federation.settings import Settings
from workflows.certificates import RevokeCertificates
from workflows.connection import connect_when_up
from workflows.deadlines import LocalDeadlines
from workflows.identity import GatewayGuard, speaking_for, worker_identity
from workflows.peer_add import PeerAdd
from workflows.peer_certificate import PeerCertificate
from workflows.reconcile import ReconcileEnrollments, ReconcileInput, ensure_reconcile_schedule
from workflows.redeem import RedeemEnrollment
from workflows.renew import RenewCertificate
from workflows.revoke import RevokeGrant
from workflows.task_queue import refuse_foreign_pollers

log = logging.getLogger("mosaic.worker")

WORKFLOWS: Sequence[type] = (
    RedeemEnrollment,
    PeerAdd,
    RevokeGrant,
    RevokeCertificates,
    RenewCertificate,
    PeerCertificate,
    ReconcileEnrollments,
)


def build_worker(
    client: Client,
    *,
    gateway_id: uuid.UUID,
    task_queue: str,
    sessions: async_sessionmaker[AsyncSession],
    ca: CertificateAuthority,
    sealer: Sealer,
    remote: RemoteSettings,
    workflow_failure_exception_types: Sequence[type[BaseException]] = (),
    sandboxed: bool = True,
    interceptors: Sequence[Interceptor] = (),
) -> Worker:
    """A worker for every Mosaic workflow on ``task_queue``, acting for ``gateway_id`` only:
    its identity names the gateway and its activities refuse another gateway's runs.

    ``sandboxed=False`` (what ``mosaic gateway worker`` runs) skips the SDK's workflow
    sandbox, which re-imports the workflow modules for every run and proxies every call:
    about a third of the worker's CPU per enrollment (docs/benchmarks.md). Determinism is
    guarded elsewhere: the tests run the workflows in the sandbox, and the recorded
    histories in tests/workflows/histories replay on every change, in CI.

    ``interceptors`` run inside the worker's own, so inside a local activity's deadline
    (``workflows.deadlines``): the tests' fault hooks."""
    activities = [
        *RedeemActivities(sessions).all(),
        *CertificateActivities(sessions, ca).all(),
        *PeerAddActivities(sessions, sealer, remote).all(),
        *RevokeActivities(sessions).all(),
        *RenewActivities(sessions).all(),
        *LifecycleActivities(sessions, sealer, channels_for(remote)).all(),
        # A run an activity starts is this gateway's too.
        *ReconcileActivities(sessions, speaking_for(client, gateway_id), ca).all(),
    ]
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities,
        workflow_failure_exception_types=list(workflow_failure_exception_types),
        interceptors=[GatewayGuard(gateway_id), LocalDeadlines(), *interceptors],
        identity=worker_identity(gateway_id),
        workflow_runner=SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner(),
    )


def channels_for(remote: RemoteSettings) -> Channels:
    """The worker's mTLS connection pools to remote listeners (renewals go through them)."""
    policy = AddressPolicy.of(
        allow_http_loopback=remote.allow_http_loopback, allowed_networks=remote.allowed_networks
    )
    return Channels(policy, remote.max_bytes)


def sealer_from_settings(settings: Settings) -> Sealer:
    return Sealer(settings.better_auth_secret.get_secret_value())


def remote_settings(settings: Settings) -> RemoteSettings:
    return RemoteSettings(
        allow_http_loopback=settings.mosaic_enroll_allow_http_loopback,
        ca_bundle=settings.mosaic_enroll_ca_bundle,
        allowed_networks=settings.mosaic_enroll_allowed_networks,
        max_bytes=settings.mosaic_remote_max_bytes,
    )


def reconcile_input(settings: Settings) -> ReconcileInput:
    return ReconcileInput(
        max_pending_age_seconds=settings.mosaic_grant_max_age_seconds,
        grace_seconds=settings.mosaic_reconcile_grace_seconds,
    )


def _activity_context() -> dict[str, str]:
    """Which run and step a worker log line belongs to (the memo maps it to the request id)."""
    if not activity.in_activity():
        return {}
    info = activity.info()
    return {"workflow_id": info.workflow_id or "", "activity": info.activity_type}


def _runtime(settings: Settings) -> Runtime | None:
    """The SDK's own worker metrics on a Prometheus endpoint, when an address is set."""
    if not settings.mosaic_worker_metrics_address:
        return None
    metrics = PrometheusConfig(bind_address=settings.mosaic_worker_metrics_address)
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))


async def run_worker(
    settings: Settings, *, share_client: Callable[[Client], None] | None = None
) -> None:
    """Connect, build and run until cancelled.

    ``share_client`` is handed the worker's client once the worker exists: an API in the
    same process (``gateway run``/``dev``) starts its runs on it, so the server may hand
    a run's first workflow task straight back to this worker (eager start).
    """
    install_redaction()
    context_providers.append(_activity_context)
    ca = ca_from_settings(settings)  # a bad CA setting fails now, not once Temporal is up
    engine = make_engine(settings.effective_database_url)
    try:
        sessions = make_sessionmaker(engine)
        gateway_id = await gateway_id_when_up(sessions)
        task_queue = task_queue_for(gateway_id, settings.mosaic_task_queue)
        connected = await connect_when_up(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            runtime=_runtime(settings),
        )
        client = speaking_for(connected, gateway_id)
        await refuse_foreign_pollers(
            client,
            namespace=settings.temporal_namespace,
            task_queue=task_queue,
            gateway_id=gateway_id,
        )
        worker = build_worker(
            client,
            gateway_id=gateway_id,
            task_queue=task_queue,
            sessions=sessions,
            ca=ca,
            sealer=sealer_from_settings(settings),
            remote=remote_settings(settings),
            sandboxed=False,
        )
        schedule_id = await ensure_reconcile_schedule(
            client,
            task_queue=task_queue,
            interval=timedelta(seconds=settings.mosaic_reconcile_seconds),
            arg=reconcile_input(settings),
        )
        log.info(
            "worker on task queue %s (gateway %s), CA %s, schedule %s every %ss",
            task_queue,
            gateway_id,
            ca.name,
            schedule_id,
            settings.mosaic_reconcile_seconds,
        )
        if share_client is not None:
            share_client(client)
        await worker.run()
    finally:
        await engine.dispose()
