"""What the app holds for its lifetime: settings, database, a lazily connected Temporal client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from federation.ca.base import CertificateAuthority
from federation.ca.factory import ca_from_settings
from federation.db.session import make_engine, make_sessionmaker
from federation.sealing import Sealer
from federation.settings import Settings


@dataclass
class Gateway:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    sealer: Sealer
    _temporal: Client | None = None
    _ca: CertificateAuthority | None = None
    _temporal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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
        """Connect on first use, so admin CRUD keeps working while Temporal is down."""
        async with self._temporal_lock:
            if self._temporal is None:
                self._temporal = await Client.connect(
                    self.settings.temporal_address, namespace=self.settings.temporal_namespace
                )
            return self._temporal

    def ca(self) -> CertificateAuthority:
        """The CA provider, for readiness checks (the worker does the signing)."""
        if self._ca is None:
            self._ca = ca_from_settings(self.settings)
        return self._ca

    async def close(self) -> None:
        await self.engine.dispose()
