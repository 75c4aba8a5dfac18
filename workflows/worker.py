"""The Temporal worker: registers workflows and activities bound to the database and CA."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.certificates import CertificateActivities
from activities.peer_add import PeerAddActivities, RemoteSettings
from activities.reconcile import ReconcileActivities
from activities.redeem import RedeemActivities
from activities.revoke import RevokeActivities
from federation.ca.base import CertificateAuthority
from federation.ca.factory import ca_from_settings
from federation.db.session import make_engine, make_sessionmaker
from federation.logredact import install_redaction
from federation.logsetup import context_providers
from federation.sealing import Sealer
from federation.settings import Settings
from workflows.certificates import RevokeCertificates
from workflows.connection import connect_when_up
from workflows.peer_add import PeerAdd
from workflows.reconcile import ReconcileEnrollments, ReconcileInput, ensure_reconcile_schedule
from workflows.redeem import RedeemEnrollment
from workflows.revoke import RevokeGrant

log = logging.getLogger("mosaic.worker")

WORKFLOWS: Sequence[type] = (
    RedeemEnrollment,
    PeerAdd,
    RevokeGrant,
    RevokeCertificates,
    ReconcileEnrollments,
)


def build_worker(
    client: Client,
    *,
    task_queue: str,
    sessions: async_sessionmaker[AsyncSession],
    ca: CertificateAuthority,
    sealer: Sealer,
    remote: RemoteSettings,
    workflow_failure_exception_types: Sequence[type[BaseException]] = (),
) -> Worker:
    """A worker for every Mosaic workflow on ``task_queue``."""
    activities = [
        *RedeemActivities(sessions, ca).all(),
        *CertificateActivities(sessions, ca).all(),
        *PeerAddActivities(sessions, sealer, remote).all(),
        *RevokeActivities(sessions).all(),
        *ReconcileActivities(sessions, client, ca).all(),
    ]
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities,
        workflow_failure_exception_types=list(workflow_failure_exception_types),
    )


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


async def run_worker(settings: Settings) -> None:
    """Connect, build and run until cancelled."""
    install_redaction()
    context_providers.append(_activity_context)
    ca = ca_from_settings(settings)  # a bad CA setting fails now, not once Temporal is up
    client = await connect_when_up(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        runtime=_runtime(settings),
    )
    engine = make_engine(settings.effective_database_url)
    worker = build_worker(
        client,
        task_queue=settings.mosaic_task_queue,
        sessions=make_sessionmaker(engine),
        ca=ca,
        sealer=sealer_from_settings(settings),
        remote=remote_settings(settings),
    )
    schedule_id = await ensure_reconcile_schedule(
        client,
        task_queue=settings.mosaic_task_queue,
        interval=timedelta(seconds=settings.mosaic_reconcile_seconds),
        arg=reconcile_input(settings),
    )
    log.info(
        "worker on task queue %s, CA %s, schedule %s every %ss",
        settings.mosaic_task_queue,
        ca.name,
        schedule_id,
        settings.mosaic_reconcile_seconds,
    )
    try:
        await worker.run()
    finally:
        await engine.dispose()
