"""Enrollment benchmark on real parts.

``python -m bench.enroll [--n 500 --concurrency 32 --single 30 --rounds 2] [--quick]``

Starts its own stack (a fresh PostgreSQL database, a real step-ca, the Temporal
dev server, ``mosaic gateway api`` and ``mosaic gateway worker`` as separate
processes), mints grants and tokens through the admin API, prepares one CSR per
token, then times only the redeems:

- single: sequential enrollments, HTTP in to certificate out;
- burst: N enrollments at concurrency C through the HTTP API;
- direct floor: the redeem activities called in-process (no Temporal, no HTTP);
- bare Temporal: a workflow of the same shape whose activities do nothing;
- alternating: more burst pairs (ours, bare), each pair in the other order from the one
  before, and sequential singles of both interleaved one by one, so that the machine's
  drift between phases meets both sides (``--rounds``).

Prints a table; ``--json FILE`` also writes every figure. Not a test: it fails
only when the stack cannot start. Every child runs in its own process group and
is stopped at exit, also on Ctrl-C and SIGTERM; the database is dropped.
``--profile DIR`` adds phases under py-spy (pip install py-spy) and
``--experiments`` phases measuring proposed changes (``bench.altworker``), both
after the measured ones and reported apart. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench import procs
from bench.procs import Child, Children, make_csr, pct, say

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = os.environ.get(
    "MOSAIC_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ADMIN_TOKEN = "bench-admin-token-" + secrets.token_hex(16)
SEALING_SECRET = "bench-sealing-secret-" + secrets.token_hex(16)
SCOPE = {"resources": ["tasks", "notes"], "excluded_resources": [], "max_rows_per_query": 100}
WARMUP = 3

TARGET_SINGLE_P50_MS = 120.0
TARGET_BURST_RATIO = 0.8
TARGET_SINGLE_RATIO = 1.25  # single p50 / bare-Temporal single p50, same run
TARGET_RSS_MIB = 200.0


# --- small helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    """One minted enrollment: token (secret), its grant and peer, a CSR for the peer's CN."""

    token: str
    grant_id: str
    peer_id: str
    common_name: str
    csr_pem: str

    @property
    def token_hash(self) -> str:
        from federation.tokens import hash_token

        return hash_token(self.token)


@dataclass
class PhaseResult:
    name: str
    n: int
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_ms_per_op: dict[str, float] = field(default_factory=dict)
    machine_util: float = float("nan")
    other_share: float = 0.0  # share of the machine's CPU capacity used by others
    rss_mib: float | None = None
    foreign_top: dict[str, float] = field(default_factory=dict)  # CPU s of others' processes
    quiet_wait_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s else float("nan")

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "name": self.name,
            "n": self.n,
            "concurrency": self.concurrency,
            "ok": self.ok,
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "wall_s": round(self.wall_s, 3),
            "throughput_per_s": round(self.throughput, 2),
            "p50_ms": round(pct(lat, 50), 1),
            "p95_ms": round(pct(lat, 95), 1),
            "p99_ms": round(pct(lat, 99), 1),
            "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
            "cpu_ms_per_op": {k: round(v, 2) for k, v in self.cpu_ms_per_op.items()},
            "machine_util": round(self.machine_util, 3),
            "other_share": round(self.other_share, 3),
            "rss_mib": None if self.rss_mib is None else round(self.rss_mib, 1),
            "foreign_cpu_s": self.foreign_top,
            "quiet_wait_s": round(self.quiet_wait_s, 1),
        }


async def run_pool(
    items: Sequence[Any], concurrency: int, op: Callable[[Any], Awaitable[None]]
) -> None:
    """Run ``op`` over ``items`` with at most ``concurrency`` in flight."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await op(item)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)) or 1)))


# --- the stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    tmp: Path
    children: Children
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    db_name: str | None = None
    db_url: str = ""
    step_ca: Any = None  # tests.support.stepca.StepCAServer
    temporal: Child | None = None
    temporal_address: str = ""
    api: Child | None = None
    api_url: str = ""
    worker: Child | None = None
    task_queue: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def component_pids(self) -> dict[str, int]:
        pids: dict[str, int] = {}
        for child in self.children.started:
            pids[child.name] = child.pid
        process = getattr(self.step_ca, "_process", None)
        if process is not None:
            pids["step-ca"] = process.pid
        postmaster = procs.postmaster_pid()
        if postmaster is not None:
            pids["postgres"] = postmaster
        return pids


async def create_database(stack: Stack) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    name = f"mosaic_bench_{stack.run_id}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    stack.db_name = name
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    stack.db_url = f"{base}/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def child_env(stack: Stack) -> dict[str, str]:
    """The parent's environment minus any Mosaic setting, plus this stack's."""
    prefixes = ("MOSAIC_", "STEP_CA_", "TEMPORAL_", "DATABASE_URL", "BETTER_AUTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    files = stack.step_ca.files
    env.update(
        {
            "MOSAIC_DATA_DIR": str(stack.tmp / "data"),
            "DATABASE_URL": stack.db_url,
            "TEMPORAL_ADDRESS": stack.temporal_address,
            "MOSAIC_TASK_QUEUE": stack.task_queue,
            "MOSAIC_ADMIN_TOKEN": ADMIN_TOKEN,
            "BETTER_AUTH_SECRET": SEALING_SECRET,
            "MOSAIC_CA": "step-ca",
            "STEP_CA_URL": stack.step_ca.url,
            "STEP_CA_PROVISIONER_KEY_JSON": files.provisioner_key_json.read_text(encoding="utf-8"),
            "STEP_CA_ROOT_CERT_PATH": str(files.root_cert),
            "MOSAIC_PUBLIC_URL": stack.api_url,
            # Every bench request comes from 127.0.0.1, one bucket of the per-client enrollment
            # rate limit (api/protection.py, 60/min by default): lifted, as the tests do, so the
            # bench measures the pipeline and not the limiter.
            "MOSAIC_ENROLL_RATE_PER_MINUTE": "10000000",
            "MOSAIC_ENROLL_BURST": "1000000",
        }
    )
    return env


async def wait_pollers(
    client: Any, task_queue: str, child: Child | None = None, timeout_s: float = 30.0
) -> None:
    """Until a worker (``child``, when given) polls ``task_queue`` for workflow tasks."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited during start-up:\n{child.log_tail()}")
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        if response.pollers:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no worker polls task queue {task_queue} after {timeout_s:.0f}s")


async def wait_http(url: str, child: Child, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited during start-up:\n{child.log_tail()}")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not healthy after {timeout_s:.0f}s:\n{child.log_tail()}")


async def start_stack(stack: Stack) -> Any:
    """Database, step-ca, Temporal, API, worker; returns a Temporal client for the bench."""
    from temporalio.client import Client

    from api.devserver import start_dev_server
    from federation.db.migrate import upgrade_async
    from tests.support.stepca import StepCAServer

    t0 = time.monotonic()
    await create_database(stack)
    await upgrade_async(stack.db_url)
    say(f"database {stack.db_name} created and migrated")

    stack.step_ca = StepCAServer(stack.tmp / "step-ca")
    stack.step_ca.start()
    say(f"step-ca on {stack.step_ca.url}")

    port, ui_port = procs.free_port(), procs.free_port()
    temporal_log = stack.tmp / "temporal.log"
    process = start_dev_server(
        stack.tmp / "temporal", port=port, ui_port=ui_port, log_file=temporal_log
    )
    stack.temporal = stack.children.adopt("temporal", process, temporal_log)
    stack.temporal_address = f"127.0.0.1:{port}"
    say(f"Temporal dev server on {stack.temporal_address} (file-backed SQLite, WAL)")

    api_port = procs.free_port()
    stack.api_url = f"http://127.0.0.1:{api_port}"
    stack.task_queue = f"mosaic-bench-{stack.run_id}"
    stack.env = child_env(stack)
    python = sys.executable
    mosaic = str(Path(python).parent / "mosaic")
    stack.api = stack.children.spawn(
        "api",
        # The production command (Dockerfile): the guarded listener, not a bare uvicorn.
        [mosaic, "gateway", "api", "--host", "127.0.0.1", "--port", str(api_port)],
        env=stack.env,
        log_path=stack.tmp / "api.log",
        cwd=REPO,
    )
    stack.worker = stack.children.spawn(
        "worker",
        [mosaic, "gateway", "worker"],
        env=stack.env,
        log_path=stack.tmp / "worker.log",
        cwd=REPO,
    )
    client = await Client.connect(stack.temporal_address)
    await wait_http(f"{stack.api_url}/healthz", stack.api)
    await wait_pollers(client, stack.task_queue, stack.worker)
    say(f"API (gateway api pid {stack.api.pid}) on {stack.api_url}, worker pid {stack.worker.pid}")
    say(f"stack up in {time.monotonic() - t0:.1f}s")
    return client


# --- minting (untimed) --------------------------------------------------------------------


class Minter:
    def __init__(self, http: httpx.AsyncClient, run_id: str) -> None:
        self._http = http
        self._run_id = run_id
        self._counter = 0
        self._user_id: str | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._http.post(path, json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: HTTP {response.status_code} {response.text[:200]}")
        data: dict[str, Any] = response.json()
        return data

    async def mint(self, count: int, tag: str, concurrency: int = 16) -> list[Ticket]:
        if self._user_id is None:
            user = await self._post(
                "/api/admin/users",
                {"name": "Bench User", "email": f"bench-{self._run_id}@example.com"},
            )
            self._user_id = str(user["id"])
        start = self._counter
        self._counter += count
        tickets: list[Ticket | None] = [None] * count

        async def one(i: int) -> None:
            cn = f"{tag}-{start + i}.{self._run_id}.bench.example"
            peer = await self._post(
                "/api/admin/federation/peers", {"commonName": cn, "displayName": f"bench {cn}"}
            )
            grant = await self._post(
                "/api/admin/federation/grants",
                {"subjectUserId": self._user_id, "peerId": peer["id"], "scope": SCOPE},
            )
            token = await self._post(
                f"/api/admin/federation/grants/{grant['id']}/tokens", {"ttlSeconds": 900}
            )
            tickets[i] = Ticket(token["token"], str(grant["id"]), str(peer["id"]), cn, make_csr(cn))

        await run_pool(range(count), concurrency, one)
        return [t for t in tickets if t is not None]


# --- CPU accounting over a phase --------------------------------------------------------------


class CpuMeter:
    def __init__(self, stack: Stack) -> None:
        self._pids = stack.component_pids()
        self._before: dict[str, float] = {}
        self._busy0 = self._total0 = 0.0
        self._t0 = 0.0

    def _read(self) -> dict[str, float]:
        values = {name: procs.cpu_seconds(pid) for name, pid in self._pids.items()}
        values["bench"] = procs.self_cpu_seconds()
        return values

    def __enter__(self) -> CpuMeter:
        self._before = self._read()
        self._all_before = procs.all_process_cpu()
        self._busy0, self._total0 = procs.machine_busy_seconds()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        self.after = self._read()
        busy1, total1 = procs.machine_busy_seconds()
        ours = {os.getpid()}
        for pid in self._pids.values():
            ours.update(procs.process_tree(pid))
        self.foreign = procs.foreign_cpu(self._all_before, procs.all_process_cpu(), ours)
        self.busy = busy1 - self._busy0
        self.capacity = total1 - self._total0

    def apply(self, result: PhaseResult) -> None:
        ops = max(result.ok + len(result.errors), 1)
        result.cpu_ms_per_op = {
            name: (self.after[name] - self._before[name]) * 1000 / ops for name in self.after
        }
        ours = sum(result.cpu_ms_per_op.values())
        result.cpu_ms_per_op["machine"] = self.busy * 1000 / ops
        # CPU the machine spent outside this bench's processes (kernel threads, other users).
        result.cpu_ms_per_op["other"] = max(0.0, self.busy * 1000 / ops - ours)
        result.other_share = (
            max(0.0, self.busy - ours * ops / 1000) / self.capacity if self.capacity else 0.0
        )
        result.machine_util = self.busy / self.capacity if self.capacity else float("nan")
        top = sorted(self.foreign.items(), key=lambda kv: -kv[1])[:3]
        result.foreign_top = {comm: round(seconds, 2) for comm, seconds in top if seconds >= 0.05}


# --- the timed phases -----------------------------------------------------------------------

# Before a timed phase, wait (up to QUIET_MAX_WAIT_S) until the machine is nearly idle: on a
# shared 2-core box another process's load would otherwise go into our figures.
QUIET_MAX_WAIT_S = 10.0
QUIET_BUSY_SHARE = 0.15
# Sequential ("single") phases leave this pause between two enrollments, so each one meets an
# idle stack: back to back, the dev server is still closing the previous run (measured: the
# next run's task waits 20-35 ms in matching instead of 3-6 ms).
SINGLE_GAP_S = 0.25


async def wait_quiet() -> float:
    """Seconds waited until a 1 s window had < QUIET_BUSY_SHARE of the machine busy."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < QUIET_MAX_WAIT_S:
        busy0, total0 = procs.machine_busy_seconds()
        await asyncio.sleep(1.0)
        busy1, total1 = procs.machine_busy_seconds()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < QUIET_BUSY_SHARE:
            break
    return time.monotonic() - t0


async def timed(
    result: PhaseResult,
    stack: Stack,
    items: Sequence[Any],
    one: Callable[[Any], Awaitable[None]],
) -> PhaseResult:
    """Run ``one`` over ``items`` at the result's concurrency, with wall clock and CPU meter."""
    if result.name != "warmup":
        result.quiet_wait_s = await wait_quiet()
        if result.quiet_wait_s >= QUIET_MAX_WAIT_S:
            say(f"{result.name}: the machine is busy with other work; measuring anyway")
    gap = SINGLE_GAP_S if result.concurrency == 1 and result.name != "warmup" else 0.0

    async def spaced(item: Any) -> None:
        await one(item)
        await asyncio.sleep(gap)

    with CpuMeter(stack) as meter:
        t0 = time.perf_counter()
        await run_pool(items, result.concurrency, spaced if gap else one)
        result.wall_s = time.perf_counter() - t0 - gap * len(items)
    meter.apply(result)
    return result


async def http_phase(
    name: str,
    http: httpx.AsyncClient,
    tickets: Sequence[Ticket],
    concurrency: int,
    stack: Stack,
    marks: dict[str, tuple[int, int]] | None = None,
) -> PhaseResult:
    """POST each ticket's CSR to its enrollment URL; time HTTP in to certificate out."""
    result = PhaseResult(name, len(tickets), concurrency)

    async def one(ticket: Ticket) -> None:
        await post_redeem(http, ticket, result, marks)

    return await timed(result, stack, tickets, one)


async def post_redeem(
    http: httpx.AsyncClient,
    ticket: Ticket,
    result: PhaseResult,
    marks: dict[str, tuple[int, int]] | None = None,
) -> None:
    """One enrollment, HTTP in to certificate out, into ``result``."""
    sent_ns = time.time_ns()
    t0 = time.perf_counter()
    try:
        response = await http.post(
            f"/api/federation/enrollment/{ticket.token}", json={"csrPem": ticket.csr_pem}
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        text = f"{type(exc).__name__}: {exc}".replace(ticket.token, "<token>")
        result.errors.append(text)
        return
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status_code != 200 or "certPem" not in body:
        result.errors.append(f"HTTP {response.status_code}: {str(body)[:160]}")
        return
    result.latencies_ms.append(elapsed)
    if marks is not None:
        marks[ticket.token_hash] = (sent_ns, time.time_ns())


# The worker's two activity classes, (RedeemActivities, CertificateActivities).
DirectActivities = tuple[Any, Any]


async def direct_phase(
    name: str, acts: DirectActivities, tickets: Sequence[Ticket], concurrency: int, stack: Stack
) -> PhaseResult:
    """validate and claim → sign and verify → activate, in-process, no Temporal, no HTTP.

    The worker's own activity methods, each ticket in an activity context of its own run
    (the ledger records which run signed), so the floor pays what a real run pays.
    """
    from temporalio.testing import ActivityEnvironment

    from activities.certificates import CertifyInput
    from activities.redeem import ActivateInput, ValidateInput

    result = PhaseResult(name, len(tickets), concurrency)
    redeem, certs = acts

    async def steps(ticket: Ticket, request_id: str) -> None:
        token_hash = ticket.token_hash
        v = await redeem.validate_and_claim(ValidateInput(token_hash, ticket.csr_pem))
        certified = await certs.certify(
            CertifyInput(
                ticket.csr_pem,
                v.grant_id,
                v.subject_user_id,
                v.peer_id,
                v.csr_fingerprint,
                v.public_key_der_b64,
            )
        )
        await redeem.activate(
            ActivateInput(
                request_id,
                token_hash,
                v.grant_id,
                v.peer_id,
                certified.cert_pem,
                certified.serial,
                certified.not_after,
                certified.fingerprint,
            )
        )

    async def one(ticket: Ticket) -> None:
        request_id = uuid.uuid4().hex
        env = ActivityEnvironment()
        env.info = dataclasses.replace(
            env.info, workflow_id=f"redeem-{request_id}", workflow_run_id=uuid.uuid4().hex
        )
        t0 = time.perf_counter()
        try:
            await env.run(steps, ticket, request_id)
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            result.errors.append(f"{type(exc).__name__}: {exc}")
            return
        result.latencies_ms.append((time.perf_counter() - t0) * 1000)

    return await timed(result, stack, tickets, one)


async def bare_phase(
    name: str,
    client: Any,
    task_queue: str,
    ids: Sequence[str],
    concurrency: int,
    stack: Stack,
    *,
    upserts: bool = False,
    issue_local: bool = False,
    three_local: bool = False,
    marks: dict[str, tuple[int, int]] | None = None,
) -> PhaseResult:
    """Start each bare workflow through the bench's Temporal client and wait for its result."""
    result = PhaseResult(name, len(ids), concurrency)

    async def one(workflow_id: str) -> None:
        await run_bare(
            client, task_queue, workflow_id, result, upserts, issue_local, three_local, marks
        )

    return await timed(result, stack, ids, one)


async def run_bare(
    client: Any,
    task_queue: str,
    workflow_id: str,
    result: PhaseResult,
    upserts: bool = False,
    issue_local: bool = False,
    three_local: bool = False,
    marks: dict[str, tuple[int, int]] | None = None,
) -> None:
    """One bare workflow, started and waited for by the bench's Temporal client; ``marks``
    gets the client's clock at the start request and at the result, by workflow id."""
    from bench.bare_activities import CSR_SIZE
    from bench.bare_workflows import BareInput, BareRedeem

    sent_ns = time.time_ns()
    t0 = time.perf_counter()
    arg = BareInput(
        uuid.uuid4().hex,
        secrets.token_hex(32),
        "R" * CSR_SIZE,
        60.0,
        upserts,
        issue_local,
        three_local,
    )
    try:
        await client.execute_workflow(BareRedeem.run, arg, id=workflow_id, task_queue=task_queue)
    except Exception as exc:  # noqa: BLE001 - counted
        result.errors.append(f"{type(exc).__name__}: {exc}")
        return
    result.latencies_ms.append((time.perf_counter() - t0) * 1000)
    if marks is not None:
        marks[workflow_id] = (sent_ns, time.time_ns())


async def interleaved_singles(
    http: httpx.AsyncClient,
    client: Any,
    queue: str,
    tickets: Sequence[Ticket],
    run_id: str,
    marks: dict[str, tuple[int, int]],
) -> tuple[PhaseResult, PhaseResult]:
    """Sequential enrollments and sequential bare workflows taking turns, one each, the
    order swapped every turn: both meet the same machine, moment by moment."""
    ours = PhaseResult("single (HTTP), interleaved", len(tickets), 1)
    bare = PhaseResult("bare Temporal single, interleaved", len(tickets), 1)
    ours.quiet_wait_s = await wait_quiet()
    for i, ticket in enumerate(tickets):
        # Coroutines start when awaited: each runs on its own, in this order.
        pair = [
            post_redeem(http, ticket, ours, marks),
            run_bare(client, queue, f"bare-{run_id}-is-{i}", bare),
        ]
        for step in pair if i % 2 == 0 else reversed(pair):
            await step
            await asyncio.sleep(SINGLE_GAP_S)
    return ours, bare


# --- where a single enrollment's time goes (from Temporal history) ----------------------------


SEGMENTS = (
    (
        "http_to_wf_started",
        "request sent → workflow started (ours: HTTP + API + start; bare: start)",
    ),
    ("wft1_queue", "workflow started → 1st workflow task picked up (matching)"),
    ("wft1_run", "1st workflow task (local activities: a redeem's 3 steps, bare's first 2)"),
    ("act_queue", "task completed → activity started (matching; bare shape only)"),
    ("act_run", "the regular activity (bare shape only)"),
    ("wft2_queue", "activity completed → 2nd workflow task picked up (bare shape only)"),
    ("wft2_run", "2nd workflow task (verify + activate local activities; bare shape only)"),
    (
        "wf_done_to_http",
        "workflow completed → answer (result long-poll; ours: API checks, reply)",
    ),
)


def _ms(event: Any) -> float:
    return float(event.event_time.ToNanoseconds()) / 1e6


async def redeem_runs(client: Any, tickets: Sequence[Ticket]) -> dict[str, str]:
    """Workflow id → token hash of each ticket's redeem run, found by its GrantId search
    attribute (so the bench does not depend on how the API names the runs)."""
    ids: dict[str, str] = {}
    for ticket in tickets:
        query = f"WorkflowType = 'RedeemEnrollment' AND GrantId = '{ticket.grant_id}'"
        async for run in client.list_workflows(query):
            ids[run.id] = ticket.token_hash
            break
    return ids


async def breakdown(
    client: Any, workflow_ids: dict[str, str], marks: dict[str, tuple[int, int]] | None
) -> dict[str, dict[str, float]]:
    """Median / p95 of each segment over the given runs (workflow id → key of ``marks``)."""
    from temporalio.api.enums.v1 import EventType as E
    from temporalio.service import RPCError

    samples: dict[str, list[float]] = {key: [] for key, _ in SEGMENTS}
    samples["wf_total"] = []
    for workflow_id, key in workflow_ids.items():
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as exc:
            say(f"no history for {workflow_id}: {exc}")
            continue
        events = list(history.events)
        first: dict[int, list[Any]] = {}
        for event in events:
            first.setdefault(event.event_type, []).append(event)
        try:
            started = _ms(first[E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED][0])
            wft_started = [_ms(e) for e in first[E.EVENT_TYPE_WORKFLOW_TASK_STARTED]]
            wft_completed = [_ms(e) for e in first[E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]]
            done = _ms(first[E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED][0])
        except (KeyError, IndexError):
            continue
        samples["wft1_queue"].append(wft_started[0] - started)
        samples["wft1_run"].append(wft_completed[0] - wft_started[0])
        # A redeem is one workflow task; the bare shape has an activity and a second task.
        activity_started = first.get(E.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        activity_completed = first.get(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
        if activity_started and activity_completed and len(wft_started) > 1:
            act_started, act_completed = _ms(activity_started[0]), _ms(activity_completed[0])
            samples["act_queue"].append(act_started - wft_completed[0])
            samples["act_run"].append(act_completed - act_started)
            samples["wft2_queue"].append(wft_started[-1] - act_completed)
            samples["wft2_run"].append(wft_completed[-1] - wft_started[-1])
        samples["wf_total"].append(done - started)
        if marks is not None and key in marks:
            sent_ns, received_ns = marks[key]
            samples["http_to_wf_started"].append(started - sent_ns / 1e6)
            samples["wf_done_to_http"].append(received_ns / 1e6 - done)
    return {
        key: {"p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1), "n": len(v)}
        for key, v in samples.items()
        if v
    }


# --- profiling (optional, extra phases) ----------------------------------------------------------


class PySpy:
    """py-spy record (CPU samples, not idle) on some pids while a block runs: collapsed stacks."""

    def __init__(
        self, out_dir: Path, label: str, pids: dict[str, int], *, children: Children
    ) -> None:
        self._out = out_dir
        self._label = label
        self._pids = pids
        self._children = children
        self._spies: list[Child] = []
        self._binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.access(self._binary, os.X_OK):
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")

    def __enter__(self) -> PySpy:
        self._out.mkdir(parents=True, exist_ok=True)
        for name, pid in self._pids.items():
            output = self._out / f"{self._label}-{name}.txt"
            argv = [
                self._binary, "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
                "--gil", "--format", "raw", "--output", str(output),
            ]  # fmt: skip
            self._spies.append(
                self._children.spawn(
                    f"py-spy-{name}",
                    argv,
                    env=dict(os.environ),
                    log_path=self._out / f"{self._label}-{name}.log",
                    cwd=REPO,
                )
            )
        time.sleep(1.0)  # let py-spy attach before the load starts
        return self

    def __exit__(self, *_: object) -> None:
        for spy in self._spies:
            spy.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in self._spies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.process.wait(20)
            self._children.stop(spy)


def write_profile_summary(out: Path) -> None:
    raw = sorted(p for p in out.glob("*.txt") if p.name != "summary.txt")
    (out / "summary.txt").write_text("\n\n".join(summarize_collapsed(p) for p in raw) + "\n")


_GROUPS = (
    ("temporalio/", "Temporal SDK (worker, client, bridge)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("asyncpg/", "asyncpg"),
    ("httpx/", "HTTP (httpx/httpcore/anyio/h11)"),
    ("httpcore/", "HTTP (httpx/httpcore/anyio/h11)"),
    ("anyio/", "HTTP (httpx/httpcore/anyio/h11)"),
    ("h11/", "HTTP (httpx/httpcore/anyio/h11)"),
    ("fastapi/", "FastAPI/Starlette/pydantic"),
    ("starlette/", "FastAPI/Starlette/pydantic"),
    ("pydantic", "FastAPI/Starlette/pydantic"),
    ("uvicorn/", "uvicorn"),
    ("jwt/", "crypto (cryptography, PyJWT)"),
    ("cryptography/", "crypto (cryptography, PyJWT)"),
    ("logging/", "logging"),
    ("federation/", "Mosaic code"),
    ("activities/", "Mosaic code"),
    ("workflows/", "Mosaic code"),
    ("api/", "Mosaic code"),
)


def _category(frames: list[str]) -> str:
    """Where a CPU sample belongs: the sandbox's per-run import, workflow code, or the first
    library (walking up from the leaf) that is not the standard library."""
    if any("Importer._import" in f or "_Instance._create_instance" in f for f in frames):
        return "Temporal sandbox: per-run module re-import"
    if any("workflow_sandbox/" in f for f in frames):
        return "workflow activations (in the sandbox)"
    for frame in reversed(frames):
        if "Handle._run (asyncio/events.py" in frame or "Thread.run (threading.py" in frame:
            break  # reached the event loop or a thread's entry: nothing owns this sample
        for marker, group in _GROUPS:
            if f"({marker}" in frame or f"/{marker}" in frame:
                return group
    return "stdlib (asyncio loop, threads, ssl, ...)"


def summarize_collapsed(path: Path, top: int = 15) -> str:
    """CPU samples of a py-spy raw (collapsed) file: by category, then the top self frames."""
    categories: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no profile at {path})"
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        category = _category(frames)
        categories[category] = categories.get(category, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    if not total:
        return f"(empty profile {path})"

    def short(frame: str) -> str:
        return frame.replace(str(REPO) + "/", "").replace(
            str(Path(sys.prefix) / "lib/python3.11/site-packages") + "/", ""
        )

    out = [f"{path.name}: {total} samples (threads holding the GIL)", "  by category:"]
    for name, count in sorted(categories.items(), key=lambda kv: -kv[1]):
        out.append(f"    {100 * count / total:5.1f}%  {name}")
    out.append("  top self frames:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"    {100 * count / total:5.1f}%  {short(frame)}")
    return "\n".join(out)


# --- report ---------------------------------------------------------------------------------------


def table(results: list[PhaseResult]) -> str:
    header = f"{'phase':<26}{'n':>5}{'conc':>5}{'ok':>5}{'err':>5}{'wf/s':>8}"
    header += f"{'p50':>8}{'p95':>8}{'p99':>8}"
    lines = [header + "   (latency ms)", "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.name:<26}{r.n:>5}{r.concurrency:>5}{r.ok:>5}{len(r.errors):>5}"
            f"{r.throughput:>8.1f}{pct(r.latencies_ms, 50):>8.1f}"
            f"{pct(r.latencies_ms, 95):>8.1f}{pct(r.latencies_ms, 99):>8.1f}"
        )
    return "\n".join(lines)


def cpu_table(results: list[PhaseResult]) -> str:
    names = ["bench", "api", "worker", "temporal", "step-ca", "postgres", "ours", "other",
             "machine"]  # fmt: skip
    header = f"{'CPU ms per enrollment':<26}" + "".join(f"{n:>9}" for n in names)
    lines = [header + f"{'ceil/s':>8}{'util':>6}"]
    cores = os.cpu_count() or 1
    for r in results:
        if not r.cpu_ms_per_op:
            continue
        cpu = dict(r.cpu_ms_per_op)
        # the worker column is whichever worker served the phase
        cpu["worker"] = sum(cpu.pop(k, 0.0) for k in ("worker", "bare-worker", "alt-worker"))
        cpu["ours"] = sum(cpu.get(k, 0.0) for k in names[:6])
        if r.concurrency == 1:  # the pauses between enrollments make these two meaningless
            cpu.pop("other", None)
            cpu.pop("machine", None)
        cells = "".join(f"{cpu[n]:>9.1f}" if n in cpu else f"{'-':>9}" for n in names)
        ceiling = 1000 * cores / cpu["ours"] if cpu["ours"] else float("nan")
        util = f"{100 * r.machine_util:>5.0f}%" if r.concurrency > 1 else f"{'-':>6}"
        lines.append(f"{r.name:<26}{cells}{ceiling:>8.1f}{util}")
    lines.append(
        "(worker = the worker serving the phase; ours = bench + api + worker + temporal + step-ca"
        " + postgres; other = the rest of the machine: kernel and other users' processes;"
        f" ceil/s = {cores} cores / ours, the CPU-bound ceiling; util = machine busy / capacity)"
    )
    for r in results:
        if r.concurrency > 1 and r.other_share >= 0.10:
            who = ", ".join(f"{comm} {sec:.1f}s" for comm, sec in r.foreign_top.items())
            lines.append(
                f"  ! {r.name}: {100 * r.other_share:.0f}% of the machine went to other work"
                f" ({who or 'kernel'}); its figures are pessimistic"
            )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------


class Bench:
    """The phases of one run, in order, over one stack."""

    def __init__(self, args: argparse.Namespace, stack: Stack, client: Any) -> None:
        self.args = args
        self.stack = stack
        self.client = client  # Temporal client of the bench itself (bare phases, histories)
        limit = args.concurrency + 8
        self.admin = httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        )
        self.peer = httpx.AsyncClient(
            base_url=stack.api_url,
            timeout=60,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )
        self.minter = Minter(self.admin, stack.run_id)
        self.results: list[PhaseResult] = []
        self.experiments: list[PhaseResult] = []
        self.report: dict[str, Any] = {}

    async def aclose(self) -> None:
        await self.admin.aclose()
        await self.peer.aclose()

    async def mint(self, count: int, tag: str) -> list[Ticket]:
        """Grants, tokens and CSRs, untimed; each set right before its phase (token TTL 900 s)."""
        t0 = time.perf_counter()
        tickets = await self.minter.mint(count, tag)
        say(f"minted {count} peers+grants+tokens+CSRs ({tag}) in {time.perf_counter() - t0:.1f}s")
        return tickets

    def rss(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "rss_mib": round(procs.rss_mib(pid), 1),
                "peak_mib": round(procs.hwm_mib(pid), 1),
                "pss_mib": round(procs.pss_mib(pid), 1),
            }
            for name, pid in self.stack.component_pids().items()
        }

    def spawn_bare_worker(self, queue: str, *flags: str) -> Child:
        argv = [sys.executable, "-m", "bench.bare", "--address", self.stack.temporal_address]
        return self.stack.children.spawn(
            "bare-worker",
            [*argv, "--task-queue", queue, *flags],
            env=self.stack.env,
            log_path=self.stack.tmp / f"bare-worker-{queue}.log",
            cwd=REPO,
        )

    async def bare(
        self,
        name: str,
        queue: str,
        tag: str,
        count: int,
        concurrency: int,
        marks: dict[str, tuple[int, int]] | None = None,
        **variant: bool,
    ) -> PhaseResult:
        ids = [f"bare-{self.stack.run_id}-{tag}-{i}" for i in range(count)]
        return await bare_phase(
            name, self.client, queue, ids, concurrency, self.stack, marks=marks, **variant
        )

    # -- the phases --

    async def http(self) -> None:
        args = self.args
        warm = await self.mint(WARMUP, "warm")
        singles = await self.mint(args.single, "single")
        await http_phase("warmup", self.peer, warm, 1, self.stack)
        marks: dict[str, tuple[int, int]] = {}
        single = await http_phase("single (HTTP)", self.peer, singles, 1, self.stack, marks)
        self.results.append(single)
        say(f"single: p50 {pct(single.latencies_ms, 50):.1f} ms, errors {len(single.errors)}")

        tickets = await self.mint(args.n, "burst")
        burst = await http_phase("burst (HTTP)", self.peer, tickets, args.concurrency, self.stack)
        self.results.append(burst)
        say(
            f"burst: {burst.throughput:.1f}/s, p50 {pct(burst.latencies_ms, 50):.0f} ms,"
            f" errors {len(burst.errors)}"
        )
        # Every burst grant active afterwards? One SQL count.
        dsn = self.stack.db_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            active = await conn.fetchval(
                "SELECT count(*) FROM federation_grants"
                " WHERE status = 'active' AND id = ANY($1::uuid[])",
                [uuid.UUID(t.grant_id) for t in tickets],
            )
        finally:
            await conn.close()
        self.report["burst_grants_active"] = int(active)
        rss = self.report["rss_after_burst"] = self.rss()
        say(
            f"burst grants active: {active}/{args.n}; RSS api {rss['api']['rss_mib']:.0f} MiB,"
            f" worker {rss['worker']['rss_mib']:.0f} MiB"
        )
        ids = await redeem_runs(self.client, singles)
        self.report["single_breakdown_ms"] = await breakdown(self.client, ids, marks)

    async def direct(self) -> None:
        """(a) The direct floor: the same activity functions in-process, no Temporal, no HTTP."""
        from activities.certificates import CertificateActivities
        from activities.redeem import RedeemActivities
        from federation.db.session import make_engine, make_sessionmaker

        args, stack = self.args, self.stack
        warm = await self.mint(WARMUP, "dwarm")
        singles = await self.mint(args.single, "dsingle")
        tickets = await self.mint(args.n, "dburst")
        engine = make_engine(stack.db_url)  # the worker's engine settings
        ca = stack.step_ca.provider()  # the worker's StepCA provider, same CA
        try:
            sessions = make_sessionmaker(engine)
            acts = (RedeemActivities(sessions), CertificateActivities(sessions, ca))
            await direct_phase("warmup", acts, warm, 1, stack)
            single = await direct_phase("direct floor single", acts, singles, 1, stack)
            burst = await direct_phase("direct floor burst", acts, tickets, args.concurrency, stack)
        finally:
            await ca.aclose()
            await engine.dispose()
        self.results += [single, burst]
        say(
            f"direct floor: single p50 {pct(single.latencies_ms, 50):.1f} ms,"
            f" burst {burst.throughput:.1f}/s"
        )

    async def bare_temporal(self) -> None:
        """(b) Bare Temporal: the same workflow shape doing nothing, on its own worker process."""
        args = self.args
        queue = self.bare_queue = f"bench-bare-{self.stack.run_id}"
        worker = self.spawn_bare_worker(queue)
        await wait_pollers(self.client, queue, worker)
        await self.bare("warmup", queue, "w", WARMUP, 1)
        bare_marks: dict[str, tuple[int, int]] = {}
        single = await self.bare("bare Temporal single", queue, "s", args.single, 1, bare_marks)
        burst = await self.bare("bare Temporal burst", queue, "b", args.n, args.concurrency)
        self.results += [single, burst]
        say(
            f"bare Temporal: single p50 {pct(single.latencies_ms, 50):.1f} ms,"
            f" burst {burst.throughput:.1f}/s"
        )
        if not args.no_bare_sa:
            sa = await self.bare(
                "bare Temporal+SA burst", queue, "sa", args.n, args.concurrency, upserts=True
            )
            self.results.append(sa)
            say(f"bare Temporal + search-attribute upserts: burst {sa.throughput:.1f}/s")
        three = await self.bare(
            "bare Temporal 3-local+SA burst",
            queue,
            "3l",
            args.n,
            args.concurrency,
            upserts=True,
            three_local=True,
        )
        self.results.append(three)
        say(f"bare Temporal, the redeem's three local steps + upserts: {three.throughput:.1f}/s")
        ids = {
            f"bare-{self.stack.run_id}-s-{i}": f"bare-{self.stack.run_id}-s-{i}"
            for i in range(args.single)
        }
        self.report["bare_single_breakdown_ms"] = await breakdown(self.client, ids, bare_marks)

        if args.experiments:
            local = await self.bare(
                "exp: bare all-local+SA",
                queue,
                "al",
                args.n,
                args.concurrency,
                upserts=True,
                issue_local=True,
            )
            self.experiments.append(local)
            say(f"experiment bare all-local + SA: burst {local.throughput:.1f}/s")
        self.report["rss_end"] = self.rss()
        self.bare_worker = worker  # (c) runs on it too, and stops it

    async def alternating(self) -> None:
        """(c) Ours and bare Temporal in turns, on the same stack, so that a drift of the
        machine between phases (this machine's CPU per operation moves by up to 1.5x within
        minutes) meets both sides: more burst pairs, each pair in the other order from the
        one before (the pair above, ours first, is round 0), and sequential singles
        interleaved one by one."""
        args, stack = self.args, self.stack
        rounds = self.report["burst_rounds"] = [self._pair(0, "ours first")]
        for r in range(1, args.rounds + 1):
            tickets = await self.mint(args.n, f"round{r}")
            ids = [f"bare-{stack.run_id}-r{r}-{i}" for i in range(args.n)]
            # Coroutines start when awaited: each phase runs on its own, in this order.
            pair = [
                http_phase(f"burst (HTTP), round {r}", self.peer, tickets, args.concurrency, stack),
                bare_phase(
                    f"bare Temporal burst, round {r}",
                    self.client,
                    self.bare_queue,
                    ids,
                    args.concurrency,
                    stack,
                ),
            ]
            order = "bare first" if r % 2 else "ours first"
            for phase in reversed(pair) if r % 2 else pair:
                self.results.append(await phase)
            rounds.append(self._pair(r, order))
            say(f"round {r} ({order}): ours / bare = {rounds[-1]['ratio']:.2f}")
        tickets = await self.mint(args.single, "isingle")
        marks: dict[str, tuple[int, int]] = {}
        ours, bare = await interleaved_singles(
            self.peer, self.client, self.bare_queue, tickets, stack.run_id, marks
        )
        self.results += [ours, bare]
        runs = await redeem_runs(self.client, tickets)
        self.report["interleaved_single_breakdown_ms"] = await breakdown(self.client, runs, marks)
        say(
            f"interleaved singles: p50 {pct(ours.latencies_ms, 50):.1f} ms,"
            f" bare {pct(bare.latencies_ms, 50):.1f} ms"
        )
        stack.children.stop(self.bare_worker)

    def _pair(self, r: int, order: str) -> dict[str, Any]:
        suffix = f", round {r}" if r else ""
        by_name = {x.name: x for x in self.results}
        ours, bare = by_name[f"burst (HTTP){suffix}"], by_name[f"bare Temporal burst{suffix}"]
        return {
            "round": r,
            "order": order,
            "ours_per_s": round(ours.throughput, 2),
            "bare_per_s": round(bare.throughput, 2),
            "ratio": round(ours.throughput / bare.throughput, 3),
            "errors": len(ours.errors),
        }

    async def profile(self) -> None:
        """Extra phases under py-spy (not in the figures): a sequential run, then a burst."""
        args, stack = self.args, self.stack
        out: Path = args.profile
        assert stack.api is not None and stack.worker is not None
        pids = {"api": stack.api.pid, "worker": stack.worker.pid}
        tickets = await self.mint(max(args.single, 30), "psingle")
        with PySpy(out, "single-cpu", pids, children=stack.children):
            r = await http_phase("profiled single", self.peer, tickets, 1, stack)
        say(f"profiled single (py-spy attached): p50 {pct(r.latencies_ms, 50):.1f} ms")
        tickets = await self.mint(args.n, "pburst")
        with PySpy(out, "burst-cpu", pids, children=stack.children):
            r = await http_phase("profiled burst", self.peer, tickets, args.concurrency, stack)
        say(f"profiled burst (py-spy attached): {r.throughput:.1f}/s")
        write_profile_summary(out)
        say(f"profiles in {out} (summary.txt; raw collapsed stacks *.txt for flamegraph.pl)")

    async def run_experiments(self) -> None:
        """Proposed changes, measured: the bare baseline unsandboxed; then the real burst with
        the real worker replaced by ``bench.altworker`` under each change (same queue, same API).
        """
        args, stack = self.args, self.stack
        queue = f"bench-bare-unsandboxed-{stack.run_id}"
        worker = self.spawn_bare_worker(queue, "--unsandboxed")
        await wait_pollers(self.client, queue, worker)
        await self.bare("warmup", queue, "uw", WARMUP, 1)
        single = await self.bare("exp: bare unsandboxed (1)", queue, "us", args.single, 1)
        self.experiments.append(single)
        breakdowns = self.report.setdefault("experiment_breakdowns_ms", {})
        ids = {f"bare-{stack.run_id}-us-{i}": "" for i in range(args.single)}
        breakdowns[single.name] = await breakdown(self.client, ids, None)
        r = await self.bare("exp: bare unsandboxed", queue, "u", args.n, args.concurrency)
        say(f"experiment bare unsandboxed: burst {r.throughput:.1f}/s")
        self.experiments.append(r)
        stack.children.stop(worker)

        assert stack.worker is not None
        stack.children.stop(stack.worker)  # the API's queue is served by the experiment worker
        variants: tuple[tuple[str, list[str]], ...] = (
            ("exp: real, as is", []),
            ("exp: real, 1 workflow-task thread", ["--wft-threads", "1"]),
            ("exp: real, as is again", []),
            ("exp: real, 2 workflow-task threads", ["--wft-threads", "2"]),
        )
        for index, (name, flags) in enumerate(variants):
            alt = stack.children.spawn(
                "alt-worker",
                [sys.executable, "-m", "bench.altworker", *flags],
                env=stack.env,
                log_path=stack.tmp / f"alt-worker-{index}.log",
                cwd=REPO,
            )
            await wait_log(alt, "experiment worker:")
            warm = await self.mint(WARMUP, f"xwarm{index}")
            singles = await self.mint(args.single, f"xsingle{index}")
            tickets = await self.mint(args.n, f"xburst{index}")
            await http_phase("warmup", self.peer, warm, 1, stack)
            marks: dict[str, tuple[int, int]] = {}
            single = await http_phase(f"{name} (1)", self.peer, singles, 1, stack, marks)
            self.experiments.append(single)
            ids = await redeem_runs(self.client, singles)
            breakdowns[single.name] = await breakdown(self.client, ids, marks)
            r = await http_phase(name, self.peer, tickets, args.concurrency, stack)
            r.rss_mib = procs.rss_mib(alt.pid)
            say(
                f"{name}: burst {r.throughput:.1f}/s, p50 {pct(r.latencies_ms, 50):.0f} ms,"
                f" errors {len(r.errors)}, worker RSS {r.rss_mib:.0f} MiB"
            )
            self.experiments.append(r)
            stack.children.stop(alt)


async def bench(args: argparse.Namespace, stack: Stack, report: dict[str, Any]) -> None:
    client = await start_stack(stack)
    run = Bench(args, stack, client)
    try:
        await run.http()
        await run.direct()
        await run.bare_temporal()
        await run.alternating()
        if args.profile:
            await run.profile()
        if args.experiments:
            await run.run_experiments()
    finally:
        await run.aclose()
    report.update(run.report)
    report["phases"] = [r.summary() for r in run.results]
    report["experiments"] = [r.summary() for r in run.experiments]
    print_report(args, run.results, report)
    if run.experiments:
        print_experiments(run.results, run.experiments, report)


async def wait_log(child: Child, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited during start-up:\n{child.log_tail()}")
        if text in child.log_tail(200):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name}: no '{text}' in its log after {timeout_s:.0f}s")


def print_experiments(
    results: list[PhaseResult], experiments: list[PhaseResult], report: dict[str, Any]
) -> None:
    by_name = {r.name: r for r in results}
    print()
    print("== experiments: proposed changes, measured in this run (not part of the targets)")
    print(table(experiments))
    print()
    print(cpu_table(experiments))
    base = by_name["burst (HTTP)"].throughput
    bare = by_name["bare Temporal burst"].throughput
    breakdowns: dict[str, dict[str, dict[str, float]]] = report.get("experiment_breakdowns_ms", {})
    if breakdowns:
        print()
        print("single enrollment p50 by segment (ms): this run's worker vs the experiments")
        names = list(breakdowns)
        print(
            f"  {'segment':<24}{'today':>8}{'bare':>8}"
            + "".join(f"{n[5:][:14]:>16}" for n in names)
        )
        for key, _label in (*SEGMENTS, ("wf_total", "")):
            row = [
                report["single_breakdown_ms"].get(key),
                report["bare_single_breakdown_ms"].get(key),
            ]
            row += [breakdowns[n].get(key) for n in names]
            cells = "".join(
                f"{(c or {}).get('p50', float('nan')):>{8 if i < 2 else 16}.1f}"
                for i, c in enumerate(row)
            )
            print(f"  {key:<24}{cells}")
    for r in experiments:
        if r.name.startswith("exp: real") and r.concurrency > 1:
            print(
                f"  {r.name:<26} {r.throughput:6.1f}/s = {r.throughput / base:.2f} x this run's"
                f" burst = {r.throughput / bare:.2f} x bare Temporal"
            )


def print_report(
    args: argparse.Namespace, results: list[PhaseResult], report: dict[str, Any]
) -> None:
    by_name = {r.name: r for r in results}
    single, burst = by_name["single (HTTP)"], by_name["burst (HTTP)"]
    d_single, bare = by_name["direct floor single"], by_name["bare Temporal burst"]
    ratio_thr = burst.throughput / bare.throughput
    ratio_p50 = pct(single.latencies_ms, 50) / pct(d_single.latencies_ms, 50)
    bare_single = by_name["bare Temporal single"]
    ratio_single = pct(single.latencies_ms, 50) / pct(bare_single.latencies_ms, 50)
    rss = report["rss_after_burst"]
    rounds = report["burst_rounds"]
    ratio_rounds = statistics.median(p["ratio"] for p in rounds)
    i_single = by_name["single (HTTP), interleaved"]
    i_bare = by_name["bare Temporal single, interleaved"]
    ratio_i_single = pct(i_single.latencies_ms, 50) / pct(i_bare.latencies_ms, 50)
    report["ratios"] = {
        "burst_throughput_over_bare": round(ratio_thr, 3),
        "burst_over_bare_median_of_rounds": round(ratio_rounds, 3),
        "single_p50_over_direct_p50": round(ratio_p50, 2),
        "single_p50_over_bare_single_p50": round(ratio_single, 3),
        "single_p50_over_bare_interleaved": round(ratio_i_single, 3),
    }
    single_p50 = pct(single.latencies_ms, 50)
    checks = {
        f"single p50 <= {TARGET_SINGLE_P50_MS:.0f} ms": single_p50 <= TARGET_SINGLE_P50_MS,
        "burst: zero errors, every grant active": (
            not burst.errors
            and report["burst_grants_active"] == args.n
            and not any(p["errors"] for p in rounds)
        ),
        f"burst >= {TARGET_BURST_RATIO} x bare Temporal, first pair": (
            ratio_thr >= TARGET_BURST_RATIO
        ),
        f"burst >= {TARGET_BURST_RATIO} x bare Temporal, median of {len(rounds)} pairs": (
            ratio_rounds >= TARGET_BURST_RATIO
        ),
        f"single p50 <= {TARGET_SINGLE_RATIO} x bare Temporal single p50, phases apart": (
            ratio_single <= TARGET_SINGLE_RATIO
        ),
        f"single p50 <= {TARGET_SINGLE_RATIO} x bare Temporal single p50, interleaved": (
            ratio_i_single <= TARGET_SINGLE_RATIO
        ),
        f"API RSS <= {TARGET_RSS_MIB:.0f} MiB": rss["api"]["rss_mib"] <= TARGET_RSS_MIB,
        f"worker RSS <= {TARGET_RSS_MIB:.0f} MiB": rss["worker"]["rss_mib"] <= TARGET_RSS_MIB,
    }
    report["targets"] = checks

    print()
    print(
        f"== enrollment benchmark: N={args.n} C={args.concurrency} single={args.single}"
        f" ({os.cpu_count()} CPUs)"
    )
    print(table(results))
    print()
    print(cpu_table(results))
    print()
    print("single enrollment, where the time goes (ms; Temporal history + the client's clock):")
    interleaved = report.get("interleaved_single_breakdown_ms", {})
    for key, label in (*SEGMENTS, ("wf_total", "workflow started → completed")):
        seg = report["single_breakdown_ms"].get(key)
        bare_seg = report["bare_single_breakdown_ms"].get(key)
        i_seg = interleaved.get(key)
        ours = f"p50 {seg['p50']:>6.1f}  p95 {seg['p95']:>6.1f}" if seg else f"{'-':>23}"
        if seg or bare_seg:
            bare_txt = f"   bare p50 {bare_seg['p50']:>6.1f}" if bare_seg else ""
            i_txt = f"   interleaved p50 {i_seg['p50']:>6.1f}" if i_seg else ""
            print(f"  {label[:72]:<72} {ours}{bare_txt}{i_txt}")
    print()
    print(
        "RSS after the burst (MiB, process + children; peak = VmHWM; postgres is the whole"
        " shared server, every backend counting shared buffers again: PSS splits them):"
    )
    print(
        "  "
        + ", ".join(
            f"{k} {v['rss_mib']:.0f} (peak {v['peak_mib']:.0f}, PSS {v['pss_mib']:.0f})"
            for k, v in rss.items()
        )
    )
    print(f"burst grants active afterwards: {report['burst_grants_active']}/{args.n}")
    if burst.errors:
        print(f"burst error samples: {burst.errors[:3]}")
    print()
    d_burst = by_name["direct floor burst"]
    additive = 1 / (1 / bare.throughput + 1 / d_burst.throughput)
    report["ratios"]["burst_over_bare_plus_direct"] = round(burst.throughput / additive, 3)
    print(f"burst throughput / bare-Temporal throughput = {ratio_thr:.2f}")
    print(
        f"  (bare Temporal and the direct floor sharing these cores, costs simply added:"
        f" {additive:.1f}/s; the burst reaches {burst.throughput / additive:.2f} of that)"
    )
    print(
        "burst pairs, ours / bare: "
        + ", ".join(
            f"{p['ratio']:.2f} ({p['ours_per_s']:.1f}/{p['bare_per_s']:.1f} per s, {p['order']})"
            for p in rounds
        )
        + f"; median {ratio_rounds:.2f}"
    )
    three = by_name["bare Temporal 3-local+SA burst"]
    report["ratios"]["burst_over_bare_three_local_sa"] = round(
        burst.throughput / three.throughput, 3
    )
    print(
        f"  (for comparison, not a target: the burst / a do-nothing workflow of the redeem's"
        f" own shape now, three local activities and two upserts:"
        f" {burst.throughput / three.throughput:.2f})"
    )
    print(f"single p50 / direct-floor p50 = {ratio_p50:.1f}")
    print(f"single p50 / bare-Temporal single p50 = {ratio_single:.2f} (phases apart)")
    print(
        f"single p50 / bare-Temporal single p50 = {ratio_i_single:.2f} (interleaved:"
        f" {pct(i_single.latencies_ms, 50):.1f} / {pct(i_bare.latencies_ms, 50):.1f} ms)"
    )
    for label, ok in checks.items():
        print(f"  [{'met' if ok else 'NOT met'}] {label}")


def main(argv: Sequence[str] | None = None) -> int:
    global QUIET_MAX_WAIT_S, SINGLE_GAP_S
    parser = argparse.ArgumentParser(
        prog="python -m bench.enroll", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--n", type=int, default=500, help="enrollments in the burst")
    parser.add_argument("--concurrency", type=int, default=32, help="burst concurrency")
    parser.add_argument("--single", type=int, default=30, help="sequential enrollments")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="burst pairs (ours, bare) after the first, each in the other order",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N=50, C=8, single=10")
    parser.add_argument(
        "--no-bare-sa", action="store_true", help="skip the bare+search-attributes burst"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_MAX_WAIT_S,
        metavar="S",
        help="before each timed phase wait up to S seconds for an idle machine (0: never)",
    )
    parser.add_argument(
        "--single-gap",
        type=float,
        default=SINGLE_GAP_S,
        metavar="S",
        help="pause between two sequential enrollments (0: back to back)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--profile", metavar="DIR", help="extra py-spy phases after the figures")
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="extra phases measuring proposed changes (bare all-local / unsandboxed, real worker"
        " unsandboxed / without pool pre-ping); adds about 3 minutes",
    )
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the children's logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.concurrency, args.single, args.rounds = 50, 8, 10, 1
    QUIET_MAX_WAIT_S = args.quiet_wait
    SINGLE_GAP_S = args.single_gap
    if args.profile:
        args.profile = Path(args.profile).resolve()

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    stack = Stack(Path(tempfile.mkdtemp(prefix="mosaic-bench-")), Children())
    report: dict[str, Any] = {"args": vars(args)}
    started = time.monotonic()
    code = 0
    try:
        asyncio.run(bench(args, stack, report))
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        code = 130
    except Exception as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for child in stack.children.started:
            print(f"--- {child.name} log tail ---\n{child.log_tail()}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.children.stop_all()
        if stack.step_ca is not None:
            stack.step_ca.stop()
        if stack.db_name:
            asyncio.run(drop_database(stack.db_name))
        if args.keep_logs:
            dest = Path(args.keep_logs)
            dest.mkdir(parents=True, exist_ok=True)
            for log in [*stack.tmp.glob("*.log"), stack.tmp / "step-ca" / "step-ca.log"]:
                if log.exists():
                    shutil.copy(log, dest / log.name)
        shutil.rmtree(stack.tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    report["total_run_s"] = round(time.monotonic() - started, 1)
    print(f"total run {report['total_run_s']}s (setup, minting, phases, teardown)")
    if args.json and "phases" in report:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
