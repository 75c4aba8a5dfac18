"""The Temporal worker: registers workflows and activities bound to the database and CA."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.peer_add import PeerAddActivities, RemoteSettings
from activities.redeem import RedeemActivities
from federation.ca.base import CertificateAuthority
from federation.ca.factory import ca_from_settings
from federation.db.session import make_engine, make_sessionmaker
from federation.logredact import install_redaction
from federation.sealing import Sealer
from federation.settings import Settings
from workflows.peer_add import PeerAdd
from workflows.redeem import RedeemEnrollment

log = logging.getLogger("mosaic.worker")

WORKFLOWS: Sequence[type] = (RedeemEnrollment, PeerAdd)


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
    redeem = RedeemActivities(sessions, ca)
    peer_add = PeerAddActivities(sessions, sealer, remote)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[*redeem.all(), *peer_add.all()],
        workflow_failure_exception_types=list(workflow_failure_exception_types),
    )


def sealer_from_settings(settings: Settings) -> Sealer:
    return Sealer(settings.better_auth_secret.get_secret_value())


def remote_settings(settings: Settings) -> RemoteSettings:
    return RemoteSettings(
        allow_http_loopback=settings.mosaic_enroll_allow_http_loopback,
        ca_bundle=settings.mosaic_enroll_ca_bundle,
    )


async def run_worker(settings: Settings) -> None:
    """Connect, build and run until cancelled."""
    install_redaction()
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    engine = make_engine(settings.effective_database_url)
    ca = ca_from_settings(settings)
    worker = build_worker(
        client,
        task_queue=settings.mosaic_task_queue,
        sessions=make_sessionmaker(engine),
        ca=ca,
        sealer=sealer_from_settings(settings),
        remote=remote_settings(settings),
    )
    log.info("worker on task queue %s, CA %s", settings.mosaic_task_queue, ca.name)
    try:
        await worker.run()
    finally:
        await engine.dispose()
