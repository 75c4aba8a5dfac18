"""An extra app + worker pair on its own task queue, bound to a CA a test chooses
(a rogue step-ca, a CA with a hook). Same database and Temporal server as the lane."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from cryptography import x509
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from federation.ca.base import CertificateAuthority, IssuedCertificate, IssueRequest
from federation.db.session import make_engine, make_sessionmaker
from federation.identity import load_gateway_id
from federation.settings import Settings
from tests.support.faults import ActivityHook, Hook
from workflows.worker import build_worker, remote_settings, sealer_from_settings


@asynccontextmanager
async def lane_with_ca(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    *,
    hook: Hook | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """Yield an admin-authenticated client whose runs go to a worker bound to ``ca``.

    With ``hook`` every activity of that worker (local ones too) runs through it, to
    inject a fault or a race at a precise step (``tests.support.faults.ActivityHook``).
    The client's app carries the lane's settings as ``client.lane_settings``.
    """
    lane_settings = settings.model_copy(
        update={"mosaic_task_queue": f"{settings.mosaic_task_queue}-{uuid.uuid4().hex[:8]}"}
    )
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    worker = build_worker(
        temporal_env.client,
        gateway_id=await load_gateway_id(sessions),
        task_queue=lane_settings.mosaic_task_queue,
        sessions=sessions,
        ca=ca,
        sealer=sealer_from_settings(settings),
        remote=remote_settings(settings),
        workflow_failure_exception_types=[Exception],
        interceptors=[ActivityHook(hook)] if hook else (),
    )
    app = create_app(lane_settings)
    headers = {"Authorization": f"Bearer {settings.mosaic_admin_token.get_secret_value()}"}
    async with (
        worker,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
        ) as client,
    ):
        client.lane_settings = lane_settings  # type: ignore[attr-defined]
        yield client
    await app.state.gateway.close()
    await engine.dispose()


@dataclass
class HookedCA:
    """A real CA with a hook that runs right after each issue (to inject a race)."""

    inner: CertificateAuthority
    after_issue: Callable[[IssueRequest, IssuedCertificate], Awaitable[None]]
    revoked: list[str] = field(default_factory=list)
    name: str = "hooked"

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        issued = await self.inner.issue(request)
        await self.after_issue(request, issued)
        return issued

    async def revoke(self, serial: str, *, reason: str) -> None:
        await self.inner.revoke(serial, reason=reason)
        self.revoked.append(serial)

    def root_certificates(self) -> list[x509.Certificate]:
        return self.inner.root_certificates()

    async def check_health(self) -> None:
        await self.inner.check_health()


@dataclass
class SplitCA:
    """A real CA that signs, whose revocations go through another real provider: one
    holding the wrong provisioner key, say, so that step-ca itself refuses them. Point
    ``revoker`` back at the signing CA and the CA has "recovered"."""

    inner: CertificateAuthority
    revoker: CertificateAuthority
    name: str = "split"

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        return await self.inner.issue(request)

    async def revoke(self, serial: str, *, reason: str) -> None:
        await self.revoker.revoke(serial, reason=reason)

    def root_certificates(self) -> list[x509.Certificate]:
        return self.inner.root_certificates()

    async def check_health(self) -> None:
        await self.inner.check_health()
