"""A gateway's identity in tests: read from its database, as its worker and API do."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from federation.db.session import make_sessionmaker
from federation.identity import load_gateway_id
from workflows.identity import speaking_for


async def gateway_id_of(engine: AsyncEngine) -> uuid.UUID:
    return await load_gateway_id(make_sessionmaker(engine))


async def gateway_client(temporal_env: WorkflowEnvironment, engine: AsyncEngine) -> Client:
    """The session's Temporal connection, starting runs (and schedules) as the gateway whose
    database ``engine`` is: what its API's client does."""
    return speaking_for(temporal_env.client, await gateway_id_of(engine))
