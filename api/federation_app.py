"""The federation listener's ASGI app (gateway B): what a remote peer calls with its client
certificate. Served on its own listener (mTLS, B's CA only), never on the admin API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from api.errors import install_error_handlers
from api.federation_gate import FederationGate
from api.federation_state import FederationState
from api.routes import federation
from api.state import Gateway
from federation.settings import Settings


def create_federation_app(settings: Settings, gateway: Gateway | None = None) -> ASGIApp:
    """The federation verbs behind the gate; ``gateway`` may be shared with the admin app."""
    owned = gateway is None
    gateway = gateway or Gateway.from_settings(settings)
    state = FederationState.build(gateway)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.audit.start()
        yield
        await state.close()
        if owned:
            await gateway.close()

    app = FastAPI(
        title="Mosaic federation listener",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.federation = state
    app.state.gateway = gateway
    install_error_handlers(app)
    app.include_router(federation.router)
    gate = FederationGate(app, state)
    return gate
