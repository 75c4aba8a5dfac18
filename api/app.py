"""The FastAPI application: admin CRUD, the enrollment endpoint, health.

``uvicorn api.app:app`` builds it from the environment on first access.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import install_error_handlers
from api.metrics import router as metrics_router
from api.protection import install_protection
from api.routes import (
    audit,
    enrollment,
    grants,
    health,
    peers,
    reconcile,
    remote,
    resources,
    runs,
    users,
)
from api.state import Gateway
from federation.logredact import install_redaction
from federation.logsetup import request_id_var
from federation.settings import Settings, load_settings

_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


class RequestIds:
    """Every request has an id: the caller's ``X-Request-ID`` when well-formed, else a new
    one. Routes read it from ``request.state``, log lines from the context, and the
    answer carries it back. Plain ASGI (not ``@app.middleware``, which runs each request
    in a task of its own behind a memory stream: measurable on the enrollment path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get("x-request-id", "")
        rid = presented if _REQUEST_ID.fullmatch(presented) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        request_id_var.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings default to the environment."""
    gateway = Gateway.from_settings(settings or load_settings())
    install_redaction()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.load_identity()
        yield
        await gateway.close()

    app = FastAPI(
        title="Mosaic federation gateway",
        version="0.1.0",
        description="Admin API and enrollment endpoint of a Mosaic federation gateway.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    # Added first, so the request-id middleware below wraps it: 413 and 429 carry an id too.
    install_protection(app, gateway.settings)

    app.add_middleware(RequestIds)
    install_error_handlers(app)
    routers = (health, users, peers, remote, grants, audit, reconcile, runs, enrollment, resources)
    for module in routers:
        app.include_router(module.router)
    app.include_router(metrics_router)
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
