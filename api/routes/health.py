from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import GatewayDep
from api.schemas import Health
from api.state import Gateway

router = APIRouter(tags=["health"])
CHECK_SECONDS = 3.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive and serving."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"description": "a dependency is down; it is named"}})
async def readyz(gateway: GatewayDep) -> JSONResponse:
    """Database, Temporal and CA reachable: 200, else 503 naming what failed."""
    names = ("database", "temporal", "ca")
    results = await asyncio.gather(
        _check(_database(gateway)), _check(_temporal(gateway)), _check(_ca(gateway))
    )
    checks: dict[str, Any] = dict(zip(names, results, strict=True))
    failing = [name for name, result in checks.items() if result != "ok"]
    body = {"status": "ok" if not failing else "unavailable", "checks": checks}
    if failing:
        body["detail"] = f"not ready: {', '.join(failing)} unreachable"
    return JSONResponse(body, status_code=503 if failing else 200)


async def _check(probe: Any) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named below
        return f"error: {type(exc).__name__}"
    return "ok"


async def _database(gateway: Gateway) -> None:
    async with gateway.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _temporal(gateway: Gateway) -> None:
    client = await gateway.temporal()
    await client.service_client.check_health()


async def _ca(gateway: Gateway) -> None:
    await gateway.ca().check_health()
