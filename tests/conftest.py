"""Session-scoped fixtures that start the real services the suite needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from federation.db.migrate import upgrade_async
from federation.db.session import make_engine
from federation.settings import Settings
from tests.support.services import create_pg_database, drop_pg_database

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
SEALING_SECRET = "test-sealing-secret-0123456789abcdef"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A freshly migrated database on each backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "mosaic.db"
        url = f"sqlite+aiosqlite:///{path}"
        await upgrade_async(url)
        yield url
        return
    name, url = await create_pg_database()
    try:
        await upgrade_async(url)
        yield url
    finally:
        await drop_pg_database(name)


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "mosaic_data_dir": data_dir,
        "mosaic_admin_token": ADMIN_TOKEN,
        "better_auth_secret": SEALING_SECRET,
        "mosaic_public_url": "https://gateway-b.example",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over ASGI, with the admin token set."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http
    await app.state.gateway.close()


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[object]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()
