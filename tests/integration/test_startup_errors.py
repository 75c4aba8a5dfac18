"""Every start-up misconfiguration is one line on stderr naming the setting, exit 2.

Each row runs the real ``mosaic`` executable in a clean environment; all rows run at
once, since each is a short process spending its time on imports. Also: a worker whose
Temporal is down waits (one line per attempt) instead of dying, and stops cleanly.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from temporalio.client import Client

from api.devserver import start_dev_server, stop_process
from api.routes.reconcile import worker_polls
from federation.ca.builtin import BuiltinCA
from federation.db.session import make_engine
from tests.support.commands import MOSAIC, clean_env, stop_or_kill
from tests.support.services import PG_ADMIN_DSN, create_pg_database, drop_pg_database
from tests.support.stepca import free_port

SECRETS = {
    "MOSAIC_ADMIN_TOKEN": "startup-admin-token-0123456789",
    "BETTER_AUTH_SECRET": "startup-sealing-secret-0123456789",
}
PG_HOST = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]  # user@host:port


@dataclass(frozen=True)
class Row:
    """One misconfiguration: the environment, the command, what stderr must name."""

    name: str
    env: dict[str, str]
    args: tuple[str, ...]
    names: str
    exit_code: int = 2
    never_shown: tuple[str, ...] = ()


def _step_ca(**override: str) -> dict[str, str]:
    """step-ca settings that work except for ``override`` (files filled in per run)."""
    good = {
        "MOSAIC_CA": "step-ca",
        "STEP_CA_URL": "https://127.0.0.1:9000",
        "STEP_CA_PROVISIONER_KEY_JSON": "{key}",
        "STEP_CA_ROOT_CERT_PATH": "{root}",
    }
    return {**good, **override}


CLOSED = free_port()  # nothing listens here during the run
ROWS = [
    Row(
        "temporal-address-not-host-port",
        {"TEMPORAL_ADDRESS": "temporal.internal"},
        ("gateway", "worker"),
        "TEMPORAL_ADDRESS",
    ),
    Row(
        "temporal-address-url",
        {"TEMPORAL_ADDRESS": "http://127.0.0.1:7233"},
        ("gateway", "run", "--port", "{free}"),
        "TEMPORAL_ADDRESS",
    ),
    Row(
        "step-ca-url-http",
        _step_ca(STEP_CA_URL="http://127.0.0.1:9000"),
        ("gateway", "worker"),
        "STEP_CA_URL",
    ),
    Row(
        "step-ca-root-missing",
        _step_ca(STEP_CA_ROOT_CERT_PATH="{tmp}/no-such-root.crt"),
        ("gateway", "run", "--port", "{free}"),
        "STEP_CA_ROOT_CERT_PATH",
    ),
    Row(
        "step-ca-root-not-pem",
        _step_ca(STEP_CA_ROOT_CERT_PATH="{key_file}"),
        ("gateway", "api", "--port", "{free}"),
        "STEP_CA_ROOT_CERT_PATH",
    ),
    Row(
        "step-ca-key-placeholder",
        _step_ca(STEP_CA_PROVISIONER_KEY_JSON="changeme-provisioner-key"),
        ("gateway", "worker"),
        "STEP_CA_PROVISIONER_KEY_JSON",
        never_shown=("changeme-provisioner-key",),
    ),
    Row(
        "step-ca-key-public-only",
        _step_ca(STEP_CA_PROVISIONER_KEY_JSON="{public_key}"),
        ("gateway", "worker"),
        "STEP_CA_PROVISIONER_KEY_JSON",
    ),
    Row(
        "step-ca-url-missing",
        _step_ca(STEP_CA_URL=""),
        ("gateway", "worker"),
        "STEP_CA_URL",
    ),
    Row(
        "admin-token-short",
        {"MOSAIC_ADMIN_TOKEN": "short"},
        ("gateway", "api", "--port", "{free}"),
        "MOSAIC_ADMIN_TOKEN",
    ),
    Row(
        "admin-token-file-missing",
        {"MOSAIC_ADMIN_TOKEN": "", "MOSAIC_ADMIN_TOKEN_FILE": "{tmp}/no-such-token"},
        ("gateway", "api", "--port", "{free}"),
        "MOSAIC_ADMIN_TOKEN_FILE",
    ),
    Row(
        "admin-token-and-its-file",
        {"MOSAIC_ADMIN_TOKEN_FILE": "{tmp}/token"},
        ("gateway", "worker"),
        "MOSAIC_ADMIN_TOKEN_FILE",
        never_shown=(SECRETS["MOSAIC_ADMIN_TOKEN"],),
    ),
    Row(
        "sealing-secret-missing",
        {"BETTER_AUTH_SECRET": ""},
        ("gateway", "worker"),
        "BETTER_AUTH_SECRET_FILE",
    ),
    Row(
        "db-upgrade-database-url-file-empty",
        {"DATABASE_URL_FILE": "{tmp}/empty"},
        ("db", "upgrade"),
        "DATABASE_URL_FILE",
    ),
    Row(
        "listener-cert-missing",
        {
            "MOSAIC_FEDERATION_LISTEN": "127.0.0.1:{free2}",
            "MOSAIC_FEDERATION_TLS_CERT": "{tmp}/no-such-listener.crt",
            "MOSAIC_FEDERATION_TLS_KEY": "{key_file}",
        },
        ("gateway", "api", "--port", "{free}"),
        "MOSAIC_FEDERATION_TLS_CERT",
    ),
    Row(
        "listener-cert-not-pem",
        {
            "MOSAIC_FEDERATION_LISTEN": "127.0.0.1:{free2}",
            "MOSAIC_FEDERATION_TLS_CERT": "{tmp}/token",
            "MOSAIC_FEDERATION_TLS_KEY": "{key_file}",
        },
        ("gateway", "run", "--port", "{free}"),
        "MOSAIC_FEDERATION_TLS_CERT",
    ),
    Row(
        "api-port-taken",
        {},
        ("gateway", "api", "--port", "{taken}"),
        "--port",
    ),
    Row(
        "database-url-unknown-scheme",
        {"DATABASE_URL": "mysql://mosaic@db.internal/mosaic"},
        ("gateway", "run", "--port", "{free}"),
        "DATABASE_URL",
    ),
    Row(
        "db-upgrade-missing-database",
        {"DATABASE_URL": f"postgresql://{PG_HOST}/mosaic_no_such_database"},
        ("db", "upgrade"),
        "DATABASE_URL",
    ),
    Row(
        "db-upgrade-closed-port",
        {"DATABASE_URL": f"postgresql+asyncpg://mosaic:pa55word@127.0.0.1:{CLOSED}/mosaic"},
        ("db", "upgrade"),
        "DATABASE_URL",
        never_shown=("pa55word",),
    ),
    Row(
        "db-upgrade-unknown-host",
        {"DATABASE_URL": "postgres://mosaic:pa55word@no-such-host.invalid:5432/mosaic"},
        ("db", "upgrade"),
        "DATABASE_URL",
        never_shown=("pa55word",),
    ),
    Row(
        "db-upgrade-sqlite-dir-missing",
        {"DATABASE_URL": "sqlite+aiosqlite:///{tmp}/no-such-dir/mosaic.db"},
        ("db", "upgrade"),
        "DATABASE_URL",
    ),
    Row(
        "db-upgrade-unknown-scheme",
        {"DATABASE_URL": "mysql://mosaic@db.internal/mosaic"},
        ("db", "upgrade"),
        "DATABASE_URL",
    ),
]


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _placeholders(tmp: Path) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    public_jwk = {k: v for k, v in private_jwk.items() if k != "d"}
    key_file = tmp / "provisioner.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    root = tmp / "root_ca.crt"
    ca_root = BuiltinCA.open_or_create(tmp / "some-ca").root_certificates()[0]
    root.write_bytes(ca_root.public_bytes(serialization.Encoding.PEM))
    (tmp / "token").write_text("a-token-in-a-file-0123456789\n")
    (tmp / "empty").write_text("\n")
    return {
        "tmp": str(tmp),
        "key": json.dumps(private_jwk),
        "public_key": json.dumps(public_jwk),
        "key_file": str(key_file),
        "root": str(root),
    }


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Ran]]:
    """Every row's command, run at once (each in its own data dir)."""
    tmp = tmp_path_factory.mktemp("startup")
    values = _placeholders(tmp)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    values["taken"] = str(taken.getsockname()[1])
    running: dict[str, subprocess.Popen[str]] = {}
    try:
        for row in ROWS:
            data_dir = tmp / row.name
            data_dir.mkdir()
            row_values = {**values, "free": str(free_port()), "free2": str(free_port())}
            env = {**SECRETS, **{k: v.format(**row_values) for k, v in row.env.items()}}
            args = [arg.format(**row_values) for arg in row.args]
            running[row.name] = subprocess.Popen(
                [MOSAIC, *args],
                env=clean_env(data_dir, MOSAIC_DATA_DIR=str(data_dir), **env),
                cwd=data_dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        done = {}
        for name, process in running.items():
            try:
                stdout, stderr = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
                stderr += "\n(still running after 60 s: it did not fail at start-up)"
            done[name] = Ran(process.returncode, stdout, stderr)
        yield done
    finally:
        taken.close()
        for process in running.values():
            stop_or_kill(process)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_misconfiguration_is_one_line_naming_the_setting(
    row: Row, outcomes: dict[str, Ran]
) -> None:
    ran = outcomes[row.name]
    lines = ran.stderr.strip().splitlines()
    assert ran.returncode == row.exit_code, ran.stderr
    assert len(lines) == 1, ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout
    assert lines[0].startswith("Error: ") and row.names in lines[0], lines[0]
    for secret in row.never_shown:
        assert secret not in ran.stderr + ran.stdout


async def test_db_upgrade_accepts_a_plain_postgresql_url(tmp_path: Path) -> None:
    name, url = await create_pg_database()
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        upgrade = await asyncio.create_subprocess_exec(
            MOSAIC,
            "db",
            "upgrade",
            env=clean_env(tmp_path, DATABASE_URL=plain),
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        _, stderr = await asyncio.wait_for(upgrade.communicate(), 120)
        assert upgrade.returncode == 0, stderr.decode()
        engine = make_engine(plain)  # the engine takes it too (as asyncpg)
        try:
            async with engine.connect() as conn:
                revision = await conn.execute(text("SELECT version_num FROM alembic_version"))
                assert revision.scalar_one()
        finally:
            await engine.dispose()
    finally:
        await drop_pg_database(name)


def _spawn_worker(tmp_path: Path, port: int, **env: str) -> tuple[subprocess.Popen[str], Path]:
    log = tmp_path / "worker.log"
    worker_env = clean_env(
        tmp_path,
        MOSAIC_DATA_DIR=str(tmp_path),
        TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        **SECRETS,
        **env,
    )
    # The worker reads its gateway identity from the database before anything else.
    subprocess.run([MOSAIC, "db", "upgrade"], env=worker_env, capture_output=True, check=True)
    with log.open("w") as handle:
        worker = subprocess.Popen(
            [MOSAIC, "gateway", "worker"],
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            text=True,
        )
    return worker, log


def _wait_for_line(process: subprocess.Popen[str], log: Path, needle: str, within: float) -> str:
    """The first log line holding ``needle``; fail if the process exits first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines()
        found = [line for line in lines if needle in line]
        if found:
            return found[0]
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()}"
        time.sleep(0.1)
    pytest.fail(f"no line with {needle!r} within {within}s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[str], log: Path) -> str:
    """SIGTERM, as a service manager stops it: exit 0, no traceback; the log."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        stop_or_kill(process)
    text = log.read_text()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    return text


async def test_worker_waits_for_temporal_then_serves_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    queue = "startup-waiting-worker"
    worker, log = _spawn_worker(tmp_path, port, MOSAIC_TASK_QUEUE=queue)
    temporal = None
    try:
        line = _wait_for_line(worker, log, "waiting for Temporal", within=30)
        assert (
            f"waiting for Temporal at 127.0.0.1:{port} (TEMPORAL_ADDRESS): connection refused;"
            " retrying" in line
        )
        # Temporal comes up late: the same worker connects and starts serving.
        temporal = start_dev_server(
            tmp_path / "temporal",
            port=port,
            ui_port=free_port(),
            log_file=tmp_path / "temporal.log",
        )
        client = await Client.connect(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while not await worker_polls(client, "default", queue):
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker never polled:\n" + log.read_text()
            await asyncio.sleep(0.2)
        _stop(worker, log)
    finally:
        stop_or_kill(worker)
        if temporal is not None:
            stop_process(temporal)


def test_worker_waiting_for_temporal_stops_on_sigterm(tmp_path: Path) -> None:
    worker, log = _spawn_worker(tmp_path, free_port())
    _wait_for_line(worker, log, "waiting for Temporal", within=30)
    _stop(worker, log)
