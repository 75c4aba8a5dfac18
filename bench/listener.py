"""Per-request cost of the guarded listener (``api.server.build_server``) against
plain uvicorn h11, on the real app's ``GET /healthz``.

    .venv/bin/python -m bench.listener [--requests 2000] [--rounds 3]

Each variant serves in a process of its own (access log on, as in production,
written to a file); one keep-alive httpx client times sequential requests. The
variants alternate round by round so that drift on a shared machine hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn

from bench.procs import Children, cpu_seconds, free_port

VARIANTS = ("plain", "guarded")
WARMUP = 200


def _serve(variant: str, port: int, data_dir: Path) -> None:
    from api.app import create_app
    from api.server import build_server
    from federation.logsetup import configure_logging
    from federation.settings import Settings

    configure_logging()
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{data_dir / 'unused.db'}",
        mosaic_data_dir=data_dir,
        mosaic_admin_token="bench-admin-token-0123456789abcdef",  # noqa: S106 - a bench
        better_auth_secret="bench-sealing-secret-0123456789abcdef",  # noqa: S106 - a bench
    )
    app = create_app(settings)
    if variant == "plain":  # what run_gateway built before build_server
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, http="h11", log_level="info", log_config=None
        )
        server = uvicorn.Server(config)
    else:
        server = build_server(app, host="127.0.0.1", port=port, settings=settings)
    asyncio.run(server.serve())


def _time_requests(url: str, count: int, server_pid: int) -> tuple[list[float], float]:
    """Each request's latency, and the server's CPU time per request."""
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(200):
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        for _ in range(WARMUP):
            http.get("/healthz")
        latencies = []
        cpu_before = cpu_seconds(server_pid)
        for _ in range(count):
            start = time.perf_counter()
            response = http.get("/healthz")
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200
        cpu = (cpu_seconds(server_pid) - cpu_before) / count
    return latencies, cpu


def _summary(latencies: list[float], cpu: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p50, p90, p99 = (ms[int(len(ms) * q)] for q in (0.5, 0.9, 0.99))
    return (
        f"p50 {p50:.3f} ms  p90 {p90:.3f} ms  p99 {p99:.3f} ms"
        f"  server CPU {statistics.fmean(cpu) * 1e6:.0f} µs/request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.data_dir)
        return

    children = Children()
    results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-listener-") as tmp:
        try:
            for round_number in range(args.rounds):
                for variant in VARIANTS:
                    port = free_port()
                    child = children.spawn(
                        variant,
                        [sys.executable, "-m", "bench.listener", "--serve", variant]
                        + ["--port", str(port), "--data-dir", tmp],
                        env=os.environ,
                        log_path=Path(tmp) / f"{variant}.log",
                        cwd=Path.cwd(),
                    )
                    url = f"http://127.0.0.1:{port}"
                    latencies, per_request = _time_requests(url, args.requests, child.pid)
                    children.stop(child)
                    results[variant] += latencies
                    cpu[variant].append(per_request)
                    summary = _summary(latencies, [per_request])
                    print(f"round {round_number + 1} {variant:8} {summary}", flush=True)
        finally:
            children.stop_all()
    print()
    for variant in VARIANTS:
        print(f"all      {variant:8} {_summary(results[variant], cpu[variant])}")
    p50 = {v: statistics.median(results[v]) * 1e6 for v in VARIANTS}
    cpu_us = {v: statistics.fmean(cpu[v]) * 1e6 for v in VARIANTS}
    print(f"guarded - plain: p50 {p50['guarded'] - p50['plain']:+.1f} µs,", end=" ")
    print(f"server CPU {cpu_us['guarded'] - cpu_us['plain']:+.1f} µs/request")


if __name__ == "__main__":
    main()
