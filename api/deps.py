"""Dependencies, declared once as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.state import Gateway


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_session(gateway: GatewayDep) -> AsyncIterator[AsyncSession]:
    async with gateway.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_temporal(gateway: GatewayDep) -> Client:
    try:
        return await gateway.temporal()
    except Exception as exc:  # connection refused, DNS, TLS: all mean "not reachable now"
        raise HTTPException(
            503, "workflow engine unreachable", headers={"Retry-After": "5"}
        ) from exc


TemporalDep = Annotated[Client, Depends(get_temporal)]


def require_admin(request: Request, gateway: GatewayDep) -> str:
    """Bearer admin token, compared in constant time: 401 without one, 403 when wrong."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise HTTPException(
            401, "admin bearer token required", headers={"WWW-Authenticate": "Bearer"}
        )
    expected = gateway.settings.mosaic_admin_token.get_secret_value()
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise HTTPException(403, "admin bearer token is not valid")
    return "admin"


AdminDep = Annotated[str, Depends(require_admin)]


def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


RequestIdDep = Annotated[str, Depends(get_request_id)]
