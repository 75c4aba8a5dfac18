"""A dependency that is not there is a 503 naming it, never a 500 or a silent zero:
the database (unreachable, unknown, unopenable) and a task queue no worker polls."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from federation.settings import Settings
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.services import PG_ADMIN_DSN
from tests.support.stepca import free_port

PG_HOST = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]  # user@host:port


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            yield http
    finally:
        await app.state.gateway.close()


MISSING_DATABASES = {
    "postgresql-unknown-database": f"postgresql://{PG_HOST}/mosaic_missing_{uuid.uuid4().hex[:8]}",
    "postgresql-closed-port": f"postgresql+asyncpg://mosaic:pw@127.0.0.1:{free_port()}/mosaic",
    "sqlite-unopenable": "sqlite+aiosqlite:////nonexistent-mosaic-dir/mosaic.db",
}


@pytest.mark.parametrize("url", MISSING_DATABASES.values(), ids=MISSING_DATABASES.keys())
@pytest.mark.parametrize(
    "path",
    ["/api/admin/users", "/api/admin/federation/grants", "/api/admin/federation/audit"],
)
async def test_admin_route_without_its_database_is_503_database_unavailable(
    url: str, path: str, tmp_path: Path
) -> None:
    async with admin_client(make_settings(url, tmp_path)) as http:
        response = await http.get(path)
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "database unavailable"}
    assert response.headers["retry-after"] == "5"
    assert "pw" not in response.text


async def test_reconcile_now_with_no_worker_on_the_queue_is_503_naming_it(
    settings: Settings,
) -> None:
    queue = f"mosaic-nobody-{uuid.uuid4().hex[:8]}"
    async with admin_client(settings.model_copy(update={"mosaic_task_queue": queue})) as http:
        response = await http.post("/api/admin/federation/reconcile")
    assert response.status_code == 503, response.text
    assert response.json() == {
        "detail": f"no worker is serving task queue {queue}; start `mosaic gateway worker`"
    }
    assert response.headers["retry-after"] == "5"
