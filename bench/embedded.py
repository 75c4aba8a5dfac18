"""Embedded stack (issue 13): sequential enrollment p50 / a do-nothing workflow's p50.

``python -m bench.embedded [--n 30] [--gap 0.25] [--ratio 1.25] [--profile] [--keep-logs DIR]``

The stack a newcomer meets first: ``mosaic gateway dev`` (SQLite through aiosqlite,
built-in CA, API and worker in one process and one event loop, its own Temporal dev
server), started as a child on free ports in a temporary data dir. The baseline is
``bench.bare_workflows``: RedeemEnrollment's shape (4 local + 1 regular activity)
with activities that do nothing, on its own worker process (``python -m bench.bare``,
default worker options), on the same dev server, started from the bench's own
Temporal client.

Minted untimed first, through the admin API: per enrollment a peer (its own CN), a
grant, a token, and a P-256 CSR (CN = SAN DNS = the peer's CN). Then ``--n``
enrollments (POST the CSR to the token's enrollment URL until 200 with ``certPem``)
and ``--n`` bare runs (start, then result), alternating one and one so that drift of
the shared machine hits both, with ``--gap`` seconds after each (see
docs/benchmarks.md: back to back, the dev server is still closing the previous
run). Prints both p50s and p95s, the ratio and ``[met]``/``[NOT met]`` against
``--ratio``. ``--profile`` adds where the time goes, after the figures: each run
split by its Temporal history (client → workflow started, workflow tasks,
activities, completed → client) beside the bare run's same segments; the same steps
called in the bench process on the gateway's SQLite file and CA (what our own work
costs without Temporal or HTTP, on ``--n`` more tickets); and CPU per operation of
each process.

Exits 0 unless the stack cannot start. Every child runs in its own process group and
is stopped at exit (also on Ctrl-C and SIGTERM); the data dir is removed. The
enrollment rate limit (one bucket for 127.0.0.1) is lifted, as bench.enroll does.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench import procs
from bench.bare_activities import CSR_SIZE
from bench.bare_workflows import BareInput, BareRedeem
from bench.procs import Child, Children, make_csr, pct, say
from federation.runs import redeem_workflow_id
from federation.tokens import hash_token

REPO = Path(__file__).resolve().parents[1]
MOSAIC = str(Path(sys.executable).parent / "mosaic")
SCOPE = {"resources": ["tasks", "notes"], "excluded_resources": [], "max_rows_per_query": 100}
WARMUP = 3
START_TIMEOUT_S = 120.0


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` alone (not its children: the gateway's dev server)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Ticket:
    """One minted enrollment: its URL (holding the secret token), CSR and the token's hash."""

    url: str
    csr_pem: str
    token_hash: str

    @property
    def workflow_id(self) -> str:
        return redeem_workflow_id(self.token_hash)


@dataclass
class Sample:
    """One timed operation: latency, client clock at send/receive, its run, CPU by process."""

    workflow_id: str
    latency_ms: float
    sent_ns: int
    received_ns: int
    cpu_s: dict[str, float]


@dataclass
class Series:
    name: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return [s.latency_ms for s in self.samples]


@dataclass
class Embedded:
    """The running ``gateway dev`` and what the bench needs to talk to it."""

    gateway: Child
    data_dir: Path
    api_url: str
    temporal_address: str
    admin_token: str
    cpu_pids: dict[str, int] = field(default_factory=dict)


def gateway_env() -> dict[str, str]:
    """The parent's environment minus any Mosaic setting: the embedded defaults apply."""
    prefixes = ("MOSAIC_", "STEP_CA_", "TEMPORAL_", "DATABASE_URL", "BETTER_AUTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    # Every bench request comes from 127.0.0.1, one bucket of the per-client enrollment
    # limiter (60/min, burst 20): lifted, so the bench measures the pipeline.
    env["MOSAIC_ENROLL_RATE_PER_MINUTE"] = "10000000"
    env["MOSAIC_ENROLL_BURST"] = "1000000"
    return env


async def start_gateway(children: Children, tmp: Path) -> Embedded:
    port, temporal_port = procs.free_port(), procs.free_port()
    ui_port, federation_port = procs.free_port(), procs.free_port()
    data_dir = tmp / "gateway"
    argv = [
        MOSAIC, "gateway", "dev", "--port", str(port), "--temporal-port", str(temporal_port),
        "--ui-port", str(ui_port), "--federation-port", str(federation_port),
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    gateway = children.spawn(
        "gateway", argv, env=gateway_env(), log_path=tmp / "gateway.log", cwd=tmp
    )
    api_url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if gateway.process.poll() is not None:
                raise RuntimeError(f"gateway dev exited during start-up:\n{gateway.log_tail()}")
            if time.monotonic() - t0 > START_TIMEOUT_S:
                raise RuntimeError(f"gateway dev not ready after {START_TIMEOUT_S:.0f}s")
            try:
                if (await http.get(f"{api_url}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    token = (data_dir / "admin-token").read_text().strip()
    say(f"gateway dev ready in {time.monotonic() - t0:.1f}s: API {api_url}, pid {gateway.pid}")
    embedded = Embedded(gateway, data_dir, api_url, f"127.0.0.1:{temporal_port}", token)
    embedded.cpu_pids["gateway"] = gateway.pid
    temporal = dev_server_pid(gateway.pid)
    if temporal is not None:
        embedded.cpu_pids["temporal"] = temporal
    return embedded


def dev_server_pid(gateway_pid: int) -> int | None:
    """The Temporal dev server ``gateway dev`` started (its ``temporal`` child)."""
    for pid in procs.process_tree(gateway_pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "temporal":
                return pid
        except FileNotFoundError:
            continue
    return None


async def wait_pollers(client: Client, task_queue: str, child: Child) -> None:
    """Until ``child`` polls ``task_queue`` for workflow tasks."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
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
    raise RuntimeError(f"no worker polls {task_queue} after 30s:\n{child.log_tail()}")


async def mint(admin: httpx.AsyncClient, count: int, run_id: str) -> list[Ticket]:
    """A user once, then per enrollment a peer, a grant, a token and a CSR (untimed)."""

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await admin.post(path, json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: HTTP {response.status_code} {response.text[:200]}")
        data: dict[str, Any] = response.json()
        return data

    user = await post("/api/admin/users", {"name": "Bench", "email": f"b-{run_id}@example.com"})
    tickets = []
    for i in range(count):
        cn = f"embedded-{i}.{run_id}.bench.example"
        peer = await post(
            "/api/admin/federation/peers", {"commonName": cn, "displayName": f"bench {i}"}
        )
        grant = await post(
            "/api/admin/federation/grants",
            {"subjectUserId": user["id"], "peerId": peer["id"], "scope": SCOPE},
        )
        token = await post(
            f"/api/admin/federation/grants/{grant['id']}/tokens", {"ttlSeconds": 900}
        )
        tickets.append(Ticket(token["enrollmentUrl"], make_csr(cn), hash_token(token["token"])))
    return tickets


class Loop:
    """The interleaved runs: one enrollment, one bare run, each followed by the gap."""

    def __init__(self, stack: Embedded, peer: httpx.AsyncClient, client: Client, queue: str):
        self.stack = stack
        self.peer = peer
        self.client = client
        self.queue = queue
        self.run_id = secrets.token_hex(4)
        self.bare_count = 0

    def _cpu(self) -> dict[str, float]:
        values = {name: own_cpu_seconds(pid) for name, pid in self.stack.cpu_pids.items()}
        values["bench"] = procs.self_cpu_seconds()
        return values

    async def enroll(self, ticket: Ticket, series: Series, gap: float) -> None:
        before = self._cpu()
        sent_ns, t0 = time.time_ns(), time.perf_counter()
        try:
            response = await self.peer.post(ticket.url, json={"csrPem": ticket.csr_pem})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            text = str(exc).replace(ticket.url, "<enrollment url>")  # the URL holds the token
            series.errors.append(f"{type(exc).__name__}: {text[:120]}")
            await asyncio.sleep(gap)
            return
        elapsed = (time.perf_counter() - t0) * 1000
        received_ns = time.time_ns()
        await asyncio.sleep(gap)
        if response.status_code != 200 or "certPem" not in body:
            series.errors.append(f"HTTP {response.status_code}: {str(body)[:160]}")
            return
        cpu = {k: v - before[k] for k, v in self._cpu().items()}
        series.samples.append(Sample(ticket.workflow_id, elapsed, sent_ns, received_ns, cpu))

    async def bare(self, series: Series, gap: float) -> None:
        self.bare_count += 1
        workflow_id = f"bare-{self.run_id}-{self.bare_count}"
        arg = BareInput(uuid.uuid4().hex, secrets.token_hex(32), "R" * CSR_SIZE)
        before = self._cpu()
        sent_ns, t0 = time.time_ns(), time.perf_counter()
        try:
            await self.client.execute_workflow(
                BareRedeem.run, arg, id=workflow_id, task_queue=self.queue
            )
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            series.errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
            await asyncio.sleep(gap)
            return
        elapsed = (time.perf_counter() - t0) * 1000
        received_ns = time.time_ns()
        await asyncio.sleep(gap)
        cpu = {k: v - before[k] for k, v in self._cpu().items()}
        series.samples.append(Sample(workflow_id, elapsed, sent_ns, received_ns, cpu))


# --- where the time goes (Temporal history + the client's clock, same host) ----------------


def _ms(event: Any) -> float:
    return float(event.event_time.ToNanoseconds()) / 1e6


def split_run(events: Sequence[Any], sample: Sample) -> list[tuple[str, float]]:
    """(segment, ms) of one run in order: client → started, each workflow task's queue, run
    and the server applying its commands, each regular activity's queue and run, completed →
    client."""
    out: list[tuple[str, float]] = []
    scheduled: dict[int, float] = {}
    started_at: dict[int, float] = {}
    tasks = activities = 0
    task_done = 0.0  # when the last workflow task completed
    for event in events:
        t, kind = _ms(event), event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            out.append(("client → workflow started", t - sample.sent_ns / 1e6))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled[event.event_id] = t
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = t
            # Events of one task completion are stamped as the server applies them (markers,
            # search-attribute upserts, then the schedule): that spread is the server's.
            out.append((f"workflow task {tasks}: commands applied (server)", t - task_done))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            tasks += 1
            key = event.workflow_task_started_event_attributes.scheduled_event_id
            started_at[key] = t
            out.append((f"workflow task {tasks}: queue", t - scheduled.get(key, t)))
        elif kind in (
            EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        ):
            attrs = (
                event.workflow_task_completed_event_attributes
                if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                else event.workflow_task_failed_event_attributes
                if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
                else event.workflow_task_timed_out_event_attributes
            )
            begun = started_at.get(attrs.scheduled_event_id, t)
            out.append((f"workflow task {tasks}: run (incl. local activities)", t - begun))
            task_done = t
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            activities += 1
            key = event.activity_task_started_event_attributes.scheduled_event_id
            started_at[key] = t
            out.append((f"activity {activities}: queue", t - scheduled.get(key, t)))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            key = event.activity_task_completed_event_attributes.scheduled_event_id
            begun = started_at.get(key, t)
            out.append((f"activity {activities}: run", t - begun))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            out.append((f"workflow task {tasks}: commands applied (server)", t - task_done))
            out.append(("workflow completed → client has the answer", sample.received_ns / 1e6 - t))
    return out


async def breakdown(client: Client, series: Series) -> dict[str, list[float]]:
    """Segment → ms of every run in ``series``, plus what the segments leave unexplained."""
    by_segment: dict[str, list[float]] = {}
    for sample in series.samples:
        history = await client.get_workflow_handle(sample.workflow_id).fetch_history()
        parts = split_run(list(history.events), sample)
        for name, value in parts:
            by_segment.setdefault(name, []).append(value)
        gaps = sample.latency_ms - sum(value for _, value in parts)
        by_segment.setdefault("not in any segment (clock reads)", []).append(gaps)
    return by_segment


def print_breakdown(enroll: dict[str, list[float]], bare: dict[str, list[float]]) -> None:
    order = list(enroll) + [k for k in bare if k not in enroll]
    order.sort(key=lambda k: k.startswith("not in"))  # the remainder last
    print(f"\n  {'segment (p50 ms)':<48}{'enrollment':>11}{'bare':>8}{'Δ':>8}")
    for name in order:
        e, b = pct(enroll.get(name, []), 50), pct(bare.get(name, []), 50)
        delta = e - b if name in enroll and name in bare else float("nan")
        print(f"  {name:<48}{e:>11.1f}{b:>8.1f}{delta:>+8.1f}")


def print_cpu(enroll: Series, bare: Series) -> None:
    seen = {k for s in enroll.samples + bare.samples for k in s.cpu_s}
    names = [n for n in ("gateway", "temporal", "bare-worker", "bench") if n in seen]
    print(f"\n  {'CPU ms per operation (op + gap)':<36}" + "".join(f"{n:>12}" for n in names))
    for series in (enroll, bare):
        count = max(len(series.samples), 1)
        cells = "".join(
            f"{1000 * sum(s.cpu_s.get(n, 0.0) for s in series.samples) / count:>12.1f}"
            for n in names
        )
        print(f"  {series.name:<36}{cells}")
    print(
        "  (gateway = API + worker in one process; temporal = its dev server; bench = this"
        " process, HTTP or Temporal client; 10 ms clock ticks, so read the means only)"
    )


# --- the same steps in-process: what our own work costs on SQLite and the built-in CA -------

API_BEFORE = "API: token lookup + CSR check"
API_AFTER = "API: certificate still usable?"


async def step_floor(stack: Embedded, tickets: Sequence[Ticket]) -> dict[str, list[float]]:
    """Step → ms: the API's and the activities' own work for each ticket, called in the bench
    process on the gateway's SQLite file and built-in CA (no Temporal, no HTTP), one at a
    time, with the gateway idle. Each ticket runs in an activity context of its own run."""
    from temporalio.testing import ActivityEnvironment

    from activities.certificates import CertificateActivities, CertifyInput
    from activities.redeem import ActivateInput, RedeemActivities, ValidateInput
    from federation import enrollment
    from federation.ca.factory import ca_from_settings
    from federation.db.session import make_engine, make_sessionmaker
    from federation.pki.csr import check_csr
    from federation.settings import Settings

    secret = (stack.data_dir / "sealing-secret").read_text().strip()
    settings = Settings(  # the gateway's own: its data dir, SQLite file and CA
        mosaic_data_dir=stack.data_dir,
        database_url="",
        mosaic_ca="builtin",
        mosaic_admin_token=stack.admin_token,
        better_auth_secret=secret,
    )
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    redeem, certs = (
        RedeemActivities(sessions),
        CertificateActivities(sessions, ca_from_settings(settings)),
    )
    times: dict[str, list[float]] = {}

    def took(step: str, t0: float) -> float:
        now = time.perf_counter()
        times.setdefault(step, []).append((now - t0) * 1000)
        return now

    async def steps(ticket: Ticket, request_id: str) -> None:
        h = ticket.token_hash
        t = time.perf_counter()
        async with sessions() as session:
            known = await enrollment.lookup_token(session, h)
            assert known is not None
            check_csr(ticket.csr_pem, expected_common_name=known.peer_common_name)
            await session.rollback()
        t = took(API_BEFORE, t)
        v = await redeem.validate_and_claim(ValidateInput(h, ticket.csr_pem))
        t = took("validate and claim (local activity)", t)
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
        t = took("sign with the built-in CA and verify (local activity)", t)
        await redeem.activate(
            ActivateInput(
                request_id,
                h,
                v.grant_id,
                v.peer_id,
                certified.cert_pem,
                certified.serial,
                certified.not_after,
                certified.fingerprint,
            )
        )
        t = took("activate (local activity)", t)
        async with sessions() as session:
            await enrollment.why_certificate_unusable(
                session, uuid.UUID(v.grant_id), certified.serial
            )
        took(API_AFTER, t)

    try:
        for ticket in tickets:
            env = ActivityEnvironment()
            request_id = uuid.uuid4().hex
            env.info = dataclasses.replace(
                env.info, workflow_id=ticket.workflow_id, workflow_run_id=uuid.uuid4().hex
            )
            await env.run(steps, ticket, request_id)
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    return times


def print_floor(times: dict[str, list[float]]) -> None:
    total = [sum(parts) for parts in zip(*times.values(), strict=True)]
    print(f"\n  {'our steps in-process (ms)':<48}{'p50':>11}{'p95':>8}")
    for step, values in times.items():
        print(f"  {step:<48}{pct(values, 50):>11.1f}{pct(values, 95):>8.1f}")
    print(f"  {'all of them, one after another':<48}{pct(total, 50):>11.1f}{pct(total, 95):>8.1f}")
    print(
        "  (the bench process on the gateway's SQLite file and CA, the gateway idle: what the"
        " steps cost without Temporal, HTTP or a shared event loop)"
    )


# --- the run ----------------------------------------------------------------------------------


def report(args: argparse.Namespace, enroll: Series, bare: Series, others: float) -> None:
    e50, b50 = pct(enroll.latencies, 50), pct(bare.latencies, 50)
    ratio = e50 / b50 if b50 else float("nan")
    print(
        f"\n== embedded stack (mosaic gateway dev): n={args.n} each, interleaved, gap {args.gap}s"
    )
    for series in (enroll, bare):
        print(
            f"  {series.name:<36} p50 {pct(series.latencies, 50):7.1f} ms"
            f"  p95 {pct(series.latencies, 95):7.1f} ms  ok {len(series.samples)}"
            f"  errors {len(series.errors)}"
        )
        for error in series.errors[:3]:
            print(f"    error: {error}")
    print(f"  others took {100 * others:.0f}% of the machine during the timed loop")
    verdict = "met" if ratio <= args.ratio else "NOT met"
    print(f"  enrollment p50 / bare p50 = {ratio:.2f}  [{verdict}] (target <= {args.ratio})")


async def bench(args: argparse.Namespace, children: Children, tmp: Path) -> None:
    stack = await start_gateway(children, tmp)
    client = await Client.connect(stack.temporal_address)
    queue = f"bench-bare-{secrets.token_hex(4)}"
    argv = [sys.executable, "-m", "bench.bare", "--address", stack.temporal_address]
    worker = children.spawn(
        "bare-worker",
        [*argv, "--task-queue", queue],
        env=gateway_env(),
        log_path=tmp / "bare-worker.log",
        cwd=REPO,
    )
    await wait_pollers(client, queue, worker)
    stack.cpu_pids["bare-worker"] = worker.pid
    admin = httpx.AsyncClient(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=60,
    )
    peer = httpx.AsyncClient(timeout=60)
    try:
        t0 = time.perf_counter()
        floor_count = args.n if args.profile else 0
        tickets = await mint(admin, WARMUP + args.n + floor_count, secrets.token_hex(4))
        elapsed = time.perf_counter() - t0
        say(f"minted {len(tickets)} peers + grants + tokens + CSRs in {elapsed:.1f}s")
        loop = Loop(stack, peer, client, queue)
        warm_e, warm_b = Series("warmup"), Series("warmup")
        for ticket in tickets[:WARMUP]:
            await loop.enroll(ticket, warm_e, args.gap)
            await loop.bare(warm_b, args.gap)
        if warm_e.errors or warm_b.errors:
            say(f"warm-up errors: {(warm_e.errors + warm_b.errors)[:3]}")
        enroll = Series("enrollment (HTTP in → cert out)")
        bare = Series("bare workflow (start → result)")
        ours = {os.getpid(), *procs.process_tree(stack.gateway.pid), worker.pid}
        all_before = procs.all_process_cpu()
        total0 = procs.machine_busy_seconds()[1]
        for ticket in tickets[WARMUP : WARMUP + args.n]:
            await loop.enroll(ticket, enroll, args.gap)
            await loop.bare(bare, args.gap)
        total1 = procs.machine_busy_seconds()[1]
        foreign = procs.foreign_cpu(all_before, procs.all_process_cpu(), ours)
        others = sum(foreign.values()) / (total1 - total0) if total1 > total0 else 0.0
        report(args, enroll, bare, others)
        if args.profile:
            print("\n== where the time goes (timed runs; Temporal history + the client's clock)")
            print_breakdown(await breakdown(client, enroll), await breakdown(client, bare))
            print_floor(await step_floor(stack, tickets[WARMUP + args.n :]))
            print_cpu(enroll, bare)
            top = [kv for kv in sorted(foreign.items(), key=lambda kv: -kv[1])[:3] if kv[1] >= 0.05]
            if top:
                print("  others: " + ", ".join(f"{c} {s:.1f}s" for c, s in top))
    finally:
        await admin.aclose()
        await peer.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.embedded", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--n", type=int, default=30, help="enrollments, and as many bare runs")
    parser.add_argument("--gap", type=float, default=0.25, help="pause after each run (s)")
    parser.add_argument("--ratio", type=float, default=1.25, help="target: enrollment / bare")
    parser.add_argument("--profile", action="store_true", help="also: where the time goes")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the children's logs here")
    args = parser.parse_args(argv)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    children = Children()
    tmp = Path(tempfile.mkdtemp(prefix="mosaic-bench-embedded-"))
    code = 0
    try:
        asyncio.run(bench(args, children, tmp))
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        code = 130
    except Exception as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for child in children.started:
            print(f"--- {child.name} log tail ---\n{child.log_tail()}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop_all()
        if args.keep_logs:
            dest = Path(args.keep_logs)
            dest.mkdir(parents=True, exist_ok=True)
            for log in [*tmp.glob("*.log"), tmp / "gateway" / "temporal.log"]:
                if log.exists():
                    shutil.copy(log, dest / log.name)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
