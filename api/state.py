"""What the app holds for its lifetime: settings, database, a lazily connected Temporal client."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from federation.ca.base import CertificateAuthority
from federation.ca.factory import ca_from_settings
from federation.db.session import make_engine, make_sessionmaker, unreachable_reason
from federation.identity import load_gateway_id, task_queue_for
from federation.outbound import Channels
from federation.remote_trust import ca_fingerprint
from federation.remote_url import AddressPolicy
from federation.sealing import Sealer
from federation.settings import Settings
from workflows.identity import GatewayHeaders

log = logging.getLogger("mosaic.api")


@dataclass
class Gateway:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    sealer: Sealer
    _temporal: Client | None = None
    _ca: CertificateAuthority | None = None
    _ca_root: tuple[str, str] | None = None
    _gateway_id: uuid.UUID | None = None
    _temporal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _channels: Channels | None = None
    # The in-process worker's client (``gateway run``/``dev``): runs start on it, eagerly.
    _worker_client: Client | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Gateway:
        engine = make_engine(settings.effective_database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            sealer=Sealer(settings.better_auth_secret.get_secret_value()),
        )

    async def temporal(self) -> Client:
        """Connect on first use, so admin CRUD keeps working while Temporal is down.

        Every run it starts carries this gateway's id (read on the first start, so the
        connection itself does not need the database).
        """
        async with self._temporal_lock:
            if self._worker_client is not None:
                return self._worker_client
            if self._temporal is None:
                self._temporal = await Client.connect(
                    self.settings.temporal_address,
                    namespace=self.settings.temporal_namespace,
                    interceptors=[GatewayHeaders(self.gateway_id)],
                )
            return self._temporal

    def share_worker_client(self, client: Client) -> None:
        """The worker running in this process hands over its client (stamped for this
        gateway like ours): runs start on it with eager start, so the server answers the
        start with the run's first workflow task for that worker, with no trip through the
        task queue. A run the local worker cannot take then is dispatched as usual."""
        self._worker_client = client

    @property
    def eager_start(self) -> bool:
        """Whether a worker in this process takes the runs this API starts."""
        return self._worker_client is not None

    async def gateway_id(self) -> uuid.UUID:
        """This gateway's identity, read (or created) once."""
        if self._gateway_id is None:
            self._gateway_id = await load_gateway_id(self.sessions)
        return self._gateway_id

    async def task_queue(self) -> str:
        """Where this gateway's runs go: ``MOSAIC_TASK_QUEUE``, else derived from its id."""
        return task_queue_for(await self.gateway_id(), self.settings.mosaic_task_queue)

    async def load_identity(self) -> None:
        """At start: read the identity now and say which queue this gateway uses. The
        database may be down; then the first run start reads it."""
        try:
            gateway_id = await self.gateway_id()
        except Exception as exc:  # noqa: BLE001 - start anyway: admin CRUD answers 503 itself
            reason = unreachable_reason(exc) or type(exc).__name__
            log.warning("gateway identity not read at start (%s); read on first use", reason)
            return
        log.info("gateway %s, task queue %s", gateway_id, await self.task_queue())

    def ca(self) -> CertificateAuthority:
        """The CA provider, for readiness checks (the worker does the signing)."""
        if self._ca is None:
            self._ca = ca_from_settings(self.settings)
        return self._ca

    def ca_root(self) -> tuple[str, str]:
        """(PEM, SHA-256 fingerprint) of the root our CA issues peer certificates under,
        worked out once: every redeem answer carries it."""
        if self._ca_root is None:
            root = self.ca().root_certificates()[0]
            pem = root.public_bytes(serialization.Encoding.PEM).decode("ascii")
            self._ca_root = (pem, ca_fingerprint(root))
        return self._ca_root

    def channels(self) -> Channels:
        """The mTLS connection pools to remote listeners (one per peer), made on first use."""
        if self._channels is None:
            self._channels = Channels(
                AddressPolicy.from_settings(self.settings), self.settings.mosaic_remote_max_bytes
            )
        return self._channels

    async def close(self) -> None:
        if self._channels is not None:
            await self._channels.aclose()
        await self.engine.dispose()
