"""Federated reads (issue 13): the federation listener against the admin API, a burst, RSS.

``python -m bench.federation [--rounds 20] [--per-round 25] [--burst 2000]
[--concurrency 32] [--ratio 1.3] [--rss-mib 200]``

The bench starts one Temporal dev server and gateway B (``mosaic gateway run``:
API, worker and federation listener in one process, SQLite in a temporary data
dir, built-in CA, enrollment rate limit lifted). Through B's admin API it makes
a user, a peer, a grant (scope ``tasks``, 100 rows per query), 100 tasks of
the user and an enrollment token. The bench itself plays gateway A: a P-256 key,
a CSR for the peer's CN, the token redeemed at B's enrollment URL; the returned
certificate and key are its mTLS identity towards the listener (B's root from
``<data dir>/ca/certs/root_ca.crt``). Every client is HTTP/1.1 keep-alive.

1. Latency, sequential, one request in flight. Four requests, in blocks of
   ``--per-round`` each, the order of the blocks rotating every round so that
   noise from the shared machine spreads evenly (a 0.1 s pause between blocks,
   longer than the audit writer's batching interval, keeps one block's audit
   INSERT out of the next block):
   - ``federated capabilities`` (GET over mTLS: guard + one grant query) against
     ``admin grant show`` (the same grant and scope through the admin API);
   - ``federated list`` (POST ``list/tasks`` with ``limit`` 100 over mTLS) against
     ``admin list`` (the same 100 rows, ``GET /api/admin/resources/tasks?owner=``).
   Printed: p50 and p99 of each, B's CPU time per request (from /proc, per block),
   and the ratio federated / admin of p50 and of p99, each ``[met]``/``[NOT met]``
   against ``--ratio``.
2. Burst: ``--burst`` federated requests (capabilities and list alternating) at
   ``--concurrency`` over as many keep-alive connections, opened before the clock
   starts. Printed: throughput, p50/p99, errors (a transport error or any status
   but 200), B's and the bench's CPU per request; then, once the batched audit
   writer has flushed (polled through ``GET /api/admin/federation/audit``), how
   many of the burst's requests have their audit row, matched by the
   ``X-Request-Id`` each answer carries. ``[met]`` means 0 errors and one row
   for every request.
3. RSS: VmRSS of B's gateway process after the burst (and its peak, VmHWM),
   ``[met]``/``[NOT met]`` against ``--rss-mib``.

Exits 0 whatever the figures; 1 only when the stack cannot start or enroll.
Every child runs in its own process group and is stopped at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.devserver import start_dev_server
from bench.procs import Child, Children, cpu_seconds, free_port, hwm_mib, rss_mib

BIN = Path(sys.executable).parent
MOSAIC = str(BIN / "mosaic")
REPO = Path(__file__).resolve().parent.parent
FEDERATION = "/api/federation/v1"
ROWS = 100
WARMUP = 50
BLOCK_PAUSE_S = 0.1  # > the audit writer's 50 ms batching interval
AUDIT_WAIT_S = 60.0


class StackFailed(RuntimeError):
    """The stack did not start, or A could not enroll with B."""


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "[met]" if ok else "[NOT met]"


# --- the stack -----------------------------------------------------------------------------


@dataclass
class Gateway:
    """Gateway B as started by the bench, and A's credentials towards it."""

    api_url: str
    federation_url: str
    admin_token: str
    data_dir: Path
    child: Child
    user_id: str = ""
    grant_id: str = ""
    tls_context: ssl.SSLContext | None = None

    @property
    def tls(self) -> ssl.SSLContext:
        """A's mTLS context towards the listener (set by ``enroll``)."""
        if self.tls_context is None:
            raise StackFailed("not enrolled yet")
        return self.tls_context

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def start_gateway(children: Children, tmp: Path) -> Gateway:
    """A Temporal dev server and ``mosaic gateway run`` (SQLite, built-in CA, listener)."""
    temporal_port, ui_port = free_port(), free_port()
    temporal_log = tmp / "temporal.log"
    process = start_dev_server(
        tmp / "temporal", port=temporal_port, ui_port=ui_port, log_file=temporal_log
    )
    children.adopt("temporal", process, temporal_log)

    data_dir = tmp / "b"
    data_dir.mkdir()
    api_port, listen_port = free_port(), free_port()
    while listen_port == api_port:
        listen_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    admin_token = secrets.token_urlsafe(24)
    prefixes = ("MOSAIC_", "STEP_CA_", "TEMPORAL_", "DATABASE_URL", "BETTER_AUTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        MOSAIC_DATA_DIR=str(data_dir),
        DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'mosaic.db'}",
        TEMPORAL_ADDRESS=f"127.0.0.1:{temporal_port}",
        MOSAIC_TASK_QUEUE=f"bench-federation-{secrets.token_hex(4)}",
        MOSAIC_ADMIN_TOKEN=admin_token,
        BETTER_AUTH_SECRET=secrets.token_urlsafe(32),
        MOSAIC_PUBLIC_URL=api_url,
        MOSAIC_FEDERATION_LISTEN=f"127.0.0.1:{listen_port}",
        # One client address redeems: lift the per-client enrollment limit, as bench/enroll.py.
        MOSAIC_ENROLL_RATE_PER_MINUTE="10000000",
        MOSAIC_ENROLL_BURST="1000000",
        PYTHONUNBUFFERED="1",
    )
    upgraded = subprocess.run(  # noqa: S603 - our own CLI
        [MOSAIC, "db", "upgrade"], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    if upgraded.returncode != 0:
        raise StackFailed(f"mosaic db upgrade failed:\n{upgraded.stderr[-2000:]}")
    child = children.spawn(
        "gateway-b",
        [MOSAIC, "gateway", "run", "--host", "127.0.0.1", "--port", str(api_port)],
        env=env,
        log_path=tmp / "gateway-b.log",
        cwd=REPO,
    )
    gateway = Gateway(api_url, f"https://127.0.0.1:{listen_port}", admin_token, data_dir, child)
    _wait_serving(gateway)
    return gateway


def _wait_serving(gateway: Gateway, timeout_s: float = 60.0) -> None:
    """Health answers, the worker polls its queue and the listener accepts connections."""
    deadline = time.monotonic() + timeout_s
    child = gateway.child
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StackFailed(f"gateway B exited during start-up:\n{child.log_tail()}")
        try:
            healthy = httpx.get(f"{gateway.api_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            healthy = False
        log = child.log_path.read_text(encoding="utf-8", errors="replace")
        if healthy and "worker on task queue" in log and _accepts(gateway.federation_url):
            return
        time.sleep(0.1)
    raise StackFailed(f"gateway B not serving after {timeout_s:.0f}s:\n{child.log_tail()}")


def _accepts(url: str) -> bool:
    import socket

    host, port = url.removeprefix("https://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _created(response: httpx.Response) -> dict[str, Any]:
    if response.status_code not in (200, 201):
        raise StackFailed(
            f"{response.request.method} {response.request.url.path}:"
            f" HTTP {response.status_code} {response.text[:300]}"
        )
    data: dict[str, Any] = response.json()
    return data


def enroll(gateway: Gateway, tmp: Path) -> None:
    """On B: user, peer, grant, 100 tasks, token. As A: key, CSR, redeem; keep the mTLS context."""
    run = secrets.token_hex(4)
    with httpx.Client(base_url=gateway.api_url, headers=gateway.auth, timeout=30) as admin:
        user = _created(
            admin.post(
                "/api/admin/users", json={"name": "Bench Ann", "email": f"ann-{run}@bench.test"}
            )
        )
        common_name = f"gw-a-{run}.bench.example"
        peer = _created(
            admin.post(
                "/api/admin/federation/peers",
                json={"commonName": common_name, "displayName": "Bench gateway A"},
            )
        )
        scope = {"resources": ["tasks"], "max_rows_per_query": ROWS}
        grant = _created(
            admin.post(
                "/api/admin/federation/grants",
                json={"subjectUserId": user["id"], "peerId": peer["id"], "scope": scope},
            )
        )
        for i in range(ROWS):
            _created(
                admin.post(
                    "/api/admin/resources/tasks",
                    json={
                        "ownerUserId": user["id"],
                        "title": f"task {i:03d}",
                        "body": f"row {i} of the federation bench; " * 6,
                    },
                )
            )
        token = _created(
            admin.post(
                f"/api/admin/federation/grants/{grant['id']}/tokens", json={"ttlSeconds": 900}
            )
        )
    gateway.user_id, gateway.grant_id = str(user["id"]), str(grant["id"])

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
    answer = _created(httpx.post(token["enrollmentUrl"], json={"csrPem": csr_pem}, timeout=60))
    if answer.get("federationUrl") != gateway.federation_url:
        raise StackFailed(f"enrollment names listener {answer.get('federationUrl')!r}")

    cert_file, key_file = tmp / "a-client.crt", tmp / "a-client.key"
    cert_file.write_text(answer["certPem"] + answer["certChainPem"], encoding="ascii")
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    context = ssl.create_default_context(cafile=str(gateway.data_dir / "ca/certs/root_ca.crt"))
    context.load_cert_chain(str(cert_file), str(key_file))
    gateway.tls_context = context


# --- 1. latency ------------------------------------------------------------------------------


@dataclass
class Series:
    """One request kind's latencies (s) and B's CPU time over its blocks (s)."""

    latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    errors: int = 0

    def p(self, q: float) -> float:
        return pct(self.latencies, q) * 1000


Op = Callable[[], httpx.Response]
PAIRS = (
    ("federated capabilities", "admin grant show"),
    ("federated list", "admin list"),
)


def latency_ops(gateway: Gateway, fed: httpx.Client, admin: httpx.Client) -> dict[str, Op]:
    owner: dict[str, str | int] = {"owner": gateway.user_id, "limit": ROWS}
    return {
        "federated capabilities": lambda: fed.get(f"{FEDERATION}/capabilities"),
        "admin grant show": lambda: admin.get(f"/api/admin/federation/grants/{gateway.grant_id}"),
        "federated list": lambda: fed.post(f"{FEDERATION}/list/tasks", json={"limit": ROWS}),
        "admin list": lambda: admin.get("/api/admin/resources/tasks", params=owner),
    }


def check_same_rows(ops: dict[str, Op]) -> None:
    """Both list routes answer the same 100 rows (else the comparison means nothing)."""
    federated = _created(ops["federated list"]())
    admin_rows = ops["admin list"]().json()
    fed_ids = [row["id"] for row in federated["items"]]
    if len(fed_ids) != ROWS or fed_ids != [row["id"] for row in admin_rows]:
        raise StackFailed(
            f"the federated list ({len(fed_ids)} rows) and the admin list"
            f" ({len(admin_rows)} rows) differ"
        )


def measure_latency(
    gateway: Gateway, rounds: int, per_round: int
) -> tuple[dict[str, Series], float]:
    """Sequential requests in rotating blocks; returns the series and the wall time."""
    pid = gateway.child.pid
    started = time.monotonic()
    with (
        httpx.Client(base_url=gateway.federation_url, verify=gateway.tls, timeout=10) as fed,
        httpx.Client(base_url=gateway.api_url, headers=gateway.auth, timeout=10) as admin,
    ):
        ops = latency_ops(gateway, fed, admin)
        check_same_rows(ops)
        for op in ops.values():  # warm both connections, the routes and B's caches
            for _ in range(WARMUP):
                op()
        series = {name: Series() for name in ops}
        names = list(ops)
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                op, into = ops[name], series[name]
                time.sleep(BLOCK_PAUSE_S)
                cpu_before = cpu_seconds(pid)
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    response = op()
                    into.latencies.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        into.errors += 1
                into.cpu_s += cpu_seconds(pid) - cpu_before
    return series, time.monotonic() - started


def print_latency(series: dict[str, Series], ratio: float, wall_s: float) -> None:
    count = len(next(iter(series.values())).latencies)
    print(f"1. latency, sequential keep-alive, {count} requests each ({wall_s:.0f} s wall):")
    for name, s in series.items():
        cpu_ms = s.cpu_s / len(s.latencies) * 1000
        errors = f"  {s.errors} errors" if s.errors else ""
        print(
            f"  {name:<24} p50 {s.p(50):7.2f} ms  p99 {s.p(99):7.2f} ms"
            f"  B CPU {cpu_ms:5.2f} ms/request{errors}"
        )
    for fed_name, admin_name in PAIRS:
        fed, admin = series[fed_name], series[admin_name]
        for q in (50, 99):
            r = fed.p(q) / admin.p(q)
            print(
                f"  {fed_name} / {admin_name} p{q}: {r:.2f}x"
                f"  {verdict(r <= ratio)} (target <= {ratio}x)"
            )


# --- 2. burst --------------------------------------------------------------------------------


@dataclass
class Burst:
    latencies: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    b_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def run_burst(gateway: Gateway, total: int, concurrency: int) -> Burst:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    result = Burst()
    async with httpx.AsyncClient(
        base_url=gateway.federation_url, verify=gateway.tls, limits=limits, timeout=30
    ) as fed:
        # Open every connection (TLS handshake included) before the clock starts.
        await asyncio.gather(*(fed.get(f"{FEDERATION}/capabilities") for _ in range(concurrency)))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(total):
            queue.put_nowait(i)

        async def one(i: int) -> None:
            t0 = time.perf_counter()
            try:
                if i % 2:
                    response = await fed.post(f"{FEDERATION}/list/tasks", json={"limit": ROWS})
                else:
                    response = await fed.get(f"{FEDERATION}/capabilities")
            except httpx.HTTPError as exc:
                result.error(type(exc).__name__)
                return
            result.latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                result.error(f"HTTP {response.status_code}")
            request_id = response.headers.get("x-request-id")
            if request_id:
                result.request_ids.append(request_id)
            else:
                result.error("no X-Request-Id")

        async def worker() -> None:
            while not queue.empty():
                await one(queue.get_nowait())

        pid = gateway.child.pid
        b_cpu, bench_cpu = cpu_seconds(pid), _self_cpu()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
        result.b_cpu_s = cpu_seconds(pid) - b_cpu
        result.bench_cpu_s = _self_cpu() - bench_cpu
    return result


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def audited(gateway: Gateway, wanted: set[str]) -> tuple[int, int, float]:
    """Wait for the audit writer: (rows found for ``wanted``, duplicate rows, seconds waited)."""
    started = time.monotonic()
    found: dict[str, int] = {}
    with httpx.Client(base_url=gateway.api_url, headers=gateway.auth, timeout=30) as admin:
        while True:
            found = _audit_rows(admin, gateway.grant_id, wanted)
            waited = time.monotonic() - started
            if len(found) >= len(wanted) or waited > AUDIT_WAIT_S:
                break
            time.sleep(0.5)
    duplicates = sum(n - 1 for n in found.values())
    return len(found), duplicates, waited


def _audit_rows(admin: httpx.Client, grant_id: str, wanted: set[str]) -> dict[str, int]:
    """Rows per request id among ``wanted``, paging the grant's audit log newest first."""
    counts: dict[str, int] = {}
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"grant": grant_id, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        response = admin.get("/api/admin/federation/audit", params=params)
        response.raise_for_status()
        for row in response.json():
            if row["requestId"] in wanted and row["verb"].startswith("federation."):
                counts[row["requestId"]] = counts.get(row["requestId"], 0) + 1
        cursor = response.headers.get("x-next-cursor")
        if not cursor:
            return counts


def print_burst(burst: Burst, total: int, concurrency: int, audit: tuple[int, int, float]) -> None:
    done = len(burst.latencies)
    errors = sum(burst.errors.values())
    detail = ", ".join(f"{k}: {v}" for k, v in burst.errors.items())
    p50, p99 = (pct(burst.latencies, q) * 1000 for q in (50, 99))
    print(
        f"\n2. burst, {total} federated requests (capabilities/list alternating), c={concurrency}:"
    )
    print(
        f"  {done / burst.wall_s:6.0f} requests/s  ({burst.wall_s:.1f} s)"
        f"  p50 {p50:.1f} ms  p99 {p99:.1f} ms"
    )
    print(
        f"  CPU per request: B {burst.b_cpu_s / total * 1000:.2f} ms,"
        f" bench (client) {burst.bench_cpu_s / total * 1000:.2f} ms"
    )
    print(f"  errors: {errors}" + (f" ({detail})" if detail else ""))
    rows, duplicates, waited = audit
    dup = f", {duplicates} duplicate rows" if duplicates else ""
    print(f"  audit rows: {rows} of {total} requests{dup} (after {waited:.1f} s of waiting)")
    ok = errors == 0 and rows == total and duplicates == 0
    print(f"  0 errors and {total} audit rows: {verdict(ok)}")


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=25, help="requests per block")
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ratio", type=float, default=1.3, help="target: federated / admin")
    parser.add_argument("--rss-mib", type=float, default=200.0, help="target: B's RSS")
    args = parser.parse_args(argv)

    children = Children()
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            try:
                gateway = start_gateway(children, tmp)
                enroll(gateway, tmp)
            except StackFailed as failed:
                print(f"bench.federation: {failed}", file=sys.stderr)
                return 1
            pid = gateway.child.pid
            print(f"gateway B pid {pid}: API {gateway.api_url}, listener {gateway.federation_url}")
            print(f"  after enrollment: RSS {rss_mib(pid):.0f} MiB\n")
            series, wall_s = measure_latency(gateway, args.rounds, args.per_round)
            print_latency(series, args.ratio, wall_s)
            burst = asyncio.run(run_burst(gateway, args.burst, args.concurrency))
            audit = audited(gateway, set(burst.request_ids))
            print_burst(burst, args.burst, args.concurrency, audit)
            rss, peak = rss_mib(pid), hwm_mib(pid)
            print("\n3. RSS of gateway B (API + worker + listener, one process) after the burst:")
            print(
                f"  VmRSS {rss:.0f} MiB (peak VmHWM {peak:.0f} MiB)"
                f"  {verdict(rss <= args.rss_mib)} (target <= {args.rss_mib:.0f} MiB)"
            )
        finally:
            children.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
