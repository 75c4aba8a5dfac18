"""Fault injection on the real parts: a PostgreSQL database of one's own, worker
processes that never outlive the test, activity hooks, and the invariants a
redeem must keep whatever fault hit it (DESIGN §5, §6)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from api.app import create_app
from federation.ca.base import CertificateAuthority
from federation.db.migrate import upgrade_async
from federation.db.session import make_sessionmaker
from federation.identity import load_gateway_id
from federation.policy import REDEEM_FAILURE_POLICY, http_status_for
from federation.settings import Settings
from tests.support.dbsnap import fetch_all
from tests.support.services import PG_ADMIN_DSN, create_pg_database, drop_pg_database
from tests.support.stepca import REPO_ROOT, StepCAServer
from workflows.redeem import RedeemResult
from workflows.worker import build_worker, remote_settings, sealer_from_settings

_PR_SET_PDEATHSIG = 1

# --------------------------------------------------------------------------- databases


@asynccontextmanager
async def own_pg_database() -> AsyncIterator[tuple[str, str]]:
    """A freshly migrated PostgreSQL database nobody else uses: (name, SQLAlchemy URL)."""
    name, url = await create_pg_database()
    try:
        await upgrade_async(url)
        yield name, url
    finally:
        await set_allow_connections(name, True)
        await drop_pg_database(name)


async def set_allow_connections(database: str, allowed: bool) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        flag = "true" if allowed else "false"
        await conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {flag}')
    finally:
        await conn.close()


async def cut_off_database(database: str, *, within: float = 10.0) -> int:
    """Refuse new connections to ``database`` and terminate every open one.

    Returns how many backends were terminated, once none is left.
    """
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            database,
        )
        # pg_terminate_backend only signals: wait until the backends are really gone.
        deadline = asyncio.get_running_loop().time() + within
        while await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = $1 AND backend_type = 'client backend'",
            database,
        ):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"backends of {database} still alive after {within}s")
            await asyncio.sleep(0.02)
        return len(rows)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- worker processes


def worker_env(settings: Settings, step_ca: StepCAServer, *, task_queue: str) -> dict[str, str]:
    """The environment of a worker process on the PostgreSQL + step-ca lane."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MOSAIC_", "STEP_CA_", "DATABASE_URL", "TEMPORAL_"))
    }
    env.update(
        {
            "DATABASE_URL": settings.effective_database_url,
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "MOSAIC_TASK_QUEUE": task_queue,
            "MOSAIC_DATA_DIR": str(settings.mosaic_data_dir),
            "MOSAIC_ADMIN_TOKEN": settings.mosaic_admin_token.get_secret_value(),
            "BETTER_AUTH_SECRET": settings.better_auth_secret.get_secret_value(),
            "MOSAIC_CA": "step-ca",
            "STEP_CA_URL": step_ca.url,
            "STEP_CA_PROVISIONER_KEY_JSON": step_ca.files.provisioner_key_json.read_text(
                encoding="utf-8"
            ),
            "STEP_CA_ROOT_CERT_PATH": str(step_ca.files.root_cert),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _die_with_parent(parent_pid: int) -> None:
    # SIGKILL, not SIGTERM: a worker must not linger (or finish a task) after the test.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)
    interruptible()


def interruptible() -> None:
    """In a child about to exec: Ctrl-C (SIGINT) works as in a terminal. A test run started
    in the background of a non-interactive shell has SIGINT ignored, and a child inherits
    that: the tests that stop a gateway with SIGINT would then wait for nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"

    async def wait(self, within: float) -> int:
        """The exit code (negative: the signal); TimeoutError if it is still running."""
        deadline = asyncio.get_running_loop().time() + within
        while (code := self.process.poll()) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"worker still running after {within}s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.02)
        return code

    def kill(self) -> None:
        """SIGKILL the whole process group (idempotent)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)


def spawn_module(
    module: str, args: Sequence[str], env: dict[str, str], log_path: Path
) -> WorkerProcess:
    """``python -m module args`` in its own process group, killed if the test process dies.

    Call from the main thread: PR_SET_PDEATHSIG fires when the spawning *thread* exits.
    """
    return spawn_command([sys.executable, "-m", module, *args], env, log_path)


def spawn_command(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    *,
    before_exec: Callable[[], None] | None = None,
) -> WorkerProcess:
    """Like ``spawn_module`` for any command; ``before_exec`` runs in the child (e.g. setrlimit)."""
    parent = os.getpid()

    def prepare_child() -> None:
        _die_with_parent(parent)
        if before_exec is not None:
            before_exec()

    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            process_group=0,
            preexec_fn=prepare_child,
        )
    return WorkerProcess(process, log_path)


# --------------------------------------------------------------------------- in-process workers


Hook = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class ActivityHook(Interceptor):
    """Routes every activity (local ones too) through ``hook(activity_type, proceed)``.

    A worker interceptor (``build_worker(interceptors=...)``): it runs inside the worker's
    own, so a hook that stalls a local activity meets the deadline a real stall would."""

    def __init__(self, hook: Hook) -> None:
        self._hook = hook

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HookedActivity(next, self._hook)


class _HookedActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, hook: Hook) -> None:
        super().__init__(next)
        self._hook = hook

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        return await self._hook(
            activity.info().activity_type, lambda: self.next.execute_activity(input)
        )


async def lane_worker(
    client: Client,
    settings: Settings,
    engine: AsyncEngine,
    ca: CertificateAuthority,
    *,
    task_queue: str | None = None,
    hook: Hook | None = None,
) -> Worker:
    """The real worker (``build_worker``) of the gateway whose database ``engine`` is, on
    ``task_queue`` (default: the settings' queue), its activities through ``hook``."""
    sessions = make_sessionmaker(engine)
    return build_worker(
        client,
        gateway_id=await load_gateway_id(sessions),
        task_queue=task_queue or settings.mosaic_task_queue,
        sessions=sessions,
        ca=ca,
        sealer=sealer_from_settings(settings),
        remote=remote_settings(settings),
        workflow_failure_exception_types=[Exception],
        interceptors=[ActivityHook(hook)] if hook else (),
    )


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over ASGI for ``settings``, admin-authenticated."""
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {settings.mosaic_admin_token.get_secret_value()}"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
        ) as client:
            yield client
    finally:
        await app.state.gateway.close()


def unique_queue(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ outcomes and invariants


@dataclass(frozen=True)
class Outcome:
    """How a redeem run ended: ``kind`` None for success, else the failure kind."""

    kind: str | None
    result: RedeemResult | None = None


async def outcome_of(handle: WorkflowHandle[Any, RedeemResult], within: float) -> Outcome:
    """Wait for the run to close (TimeoutError after ``within`` seconds)."""
    try:
        result = await asyncio.wait_for(handle.result(), timeout=within)
    except WorkflowFailureError as failure:
        cause = failure.cause
        assert isinstance(cause, ApplicationError), f"untyped workflow failure: {failure!r}"
        return Outcome(cause.type)
    return Outcome(None, result)


def _claim_fate(rule: object) -> str:
    """What the policy does with the claimed token: unchanged, release, burn or keep."""
    for field in ("claim", "token"):  # the field is ``claim`` (formerly ``token``)
        fate = getattr(rule, field, None)
        if isinstance(fate, str):
            return fate
    raise AssertionError(f"no claim fate on {rule!r}")


def db_id(engine: AsyncEngine, value: str) -> str:
    """How a UUID is stored: native on PostgreSQL, 32 hex on SQLite."""
    return value if engine.dialect.name == "postgresql" else uuid.UUID(value).hex


@dataclass(frozen=True)
class RedeemState:
    grant: dict[str, Any]
    peer: dict[str, Any]
    token: dict[str, Any]
    audit: list[dict[str, Any]]

    @property
    def allowed(self) -> list[dict[str, Any]]:
        return [row for row in self.audit if row["outcome"] == "allowed"]

    @property
    def denied(self) -> list[dict[str, Any]]:
        return [row for row in self.audit if row["outcome"] == "denied"]


async def redeem_state(engine: AsyncEngine, grant_id: str, token_hash: str) -> RedeemState:
    """The raw rows a redeem touches: grant, its peer, the token, the redeem audit rows."""
    gid = db_id(engine, grant_id)
    grants = await fetch_all(
        engine, "SELECT status, cert_serial, peer_id FROM federation_grants WHERE id = :g", g=gid
    )
    assert len(grants) == 1, f"grant {grant_id} not found"
    peers = await fetch_all(
        engine,
        "SELECT state, cert_serial FROM federation_peers WHERE id = :p",
        p=grants[0]["peer_id"],
    )
    tokens = await fetch_all(
        engine,
        "SELECT used_at, csr_fingerprint, cert_serial FROM federation_enrollment_tokens"
        " WHERE token_hash = :h",
        h=token_hash,
    )
    assert len(tokens) == 1, "token not found"
    audit = await fetch_all(
        engine,
        "SELECT outcome, status_code, cert_serial, reason FROM federation_audit_log"
        " WHERE grant_id = :g AND verb = 'enrollment.redeem' ORDER BY id",
        g=gid,
    )
    return RedeemState(grants[0], peers[0], tokens[0], audit)


async def assert_redeem_invariants(
    engine: AsyncEngine,
    handle: WorkflowHandle[Any, RedeemResult],
    *,
    grant_id: str,
    token_hash: str,
    outcome: Outcome,
    earlier_denials: int = 0,
) -> RedeemState:
    """What every fault must leave intact, given how the (last) run ended.

    - the run is closed and ended in one of the policy's outcomes;
    - at most one active certificate per grant: ``active`` ⇒ exactly one serial,
      the same on grant, peer and token, and the peer active;
    - nothing stranded: a pending grant keeps a claimed token only when the
      policy burns it (CertificateRejected, ActivationLost);
    - audit: one ``allowed`` row (with that serial) on success, else exactly one
      more ``denied`` row with the policy's status and no ``allowed`` row.
    """
    described = await handle.describe()
    assert described.status in (
        WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED,
        WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_FAILED,
    ), f"run {handle.id} is {described.status}: still live or killed"
    assert outcome.kind is None or outcome.kind in REDEEM_FAILURE_POLICY, outcome
    state = await redeem_state(engine, grant_id, token_hash)
    grant, peer, token = state.grant, state.peer, state.token
    where = f"grant={grant} peer={peer} token={token} audit={state.audit} outcome={outcome.kind}"

    if grant["status"] == "active":
        assert outcome.kind is None, f"grant active after a failed run: {where}"
        serial = grant["cert_serial"]
        assert serial, where
        assert peer["state"] == "active" and peer["cert_serial"] == serial, where
        assert token["used_at"] is not None and token["cert_serial"] == serial, where
        if outcome.result is not None:
            assert outcome.result.serial == serial, where
    else:
        assert grant["cert_serial"] is None, where
        assert peer["cert_serial"] is None and peer["state"] != "active", where

    if outcome.kind is None:
        assert grant["status"] == "active", f"successful run left the grant inactive: {where}"
        assert len(state.allowed) == 1, f"expected one allowed audit row: {where}"
        assert state.allowed[0]["status_code"] == 200, where
        assert state.allowed[0]["cert_serial"] == grant["cert_serial"], where
        assert len(state.denied) == earlier_denials, where
    else:
        rule = REDEEM_FAILURE_POLICY[outcome.kind]
        assert not state.allowed, where
        assert len(state.denied) == earlier_denials + 1, f"expected one new denial: {where}"
        assert state.denied[-1]["status_code"] == http_status_for(outcome.kind), where
        claimed = token["used_at"] is not None
        fate = _claim_fate(rule)
        if grant["status"] == "pending" and claimed:
            assert fate == "burn", f"grant stranded pending with a claimed token: {where}"
        if fate == "release":
            assert not claimed, f"token not released: {where}"
    return state
