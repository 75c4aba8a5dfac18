"""Dependencies, declared once as ``Annotated`` aliases.

Every one is ``async def``, even without an await: FastAPI runs a plain ``def``
dependency in a worker thread, a thread hop per request for a dictionary lookup.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.state import Gateway


async def get_gateway(request: Request) -> Gateway:
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


ADMIN = "admin"


def admin_refusal(authorization: str, expected: str) -> HTTPException | None:
    """Why an ``Authorization`` header does not make its caller the admin, or None.

    Bearer admin token, compared in constant time: 401 without one, 403 when wrong.
    The admin middleware (``api.protection``) and ``AdminDep`` both answer with this.
    """
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return HTTPException(
            401, "admin bearer token required", headers={"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        return HTTPException(403, "admin bearer token is not valid")
    return None


async def require_admin(request: Request, gateway: GatewayDep) -> str:
    """The actor of an admin route; the middleware already refused everyone else."""
    expected = gateway.settings.mosaic_admin_token.get_secret_value()
    refusal = admin_refusal(request.headers.get("authorization", ""), expected)
    if refusal is not None:
        raise refusal
    return ADMIN


AdminDep = Annotated[str, Depends(require_admin)]


async def get_client_address(request: Request) -> str:
    """The transport peer's address, the key the enrollment rate limit uses too."""
    return request.client.host if request.client else "unknown"


ClientAddressDep = Annotated[str, Depends(get_client_address)]


async def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


RequestIdDep = Annotated[str, Depends(get_request_id)]
