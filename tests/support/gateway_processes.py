"""Whole gateways as separate processes (`mosaic gateway run`), driven through the real
`mosaic` CLI: the way two operators on two machines would meet."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from federation.db.migrate import upgrade_async
from tests.support.commands import MOSAIC
from tests.support.faults import WorkerProcess, spawn_command, unique_queue
from tests.support.stepca import StepCAServer, free_port

_INHERITED = ("MOSAIC_", "STEP_CA_", "DATABASE_URL", "TEMPORAL_", "BETTER_AUTH_")


@dataclass
class GatewayProcess:
    name: str
    url: str
    env: dict[str, str]
    process: WorkerProcess
    federation_url: str | None

    def mosaic(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this gateway; check the exit code unless ``expect`` None."""
        done = subprocess.run(  # noqa: S603 - our own CLI
            [MOSAIC, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if expect is not None:
            assert done.returncode == expect, (
                f"[{self.name}] mosaic {' '.join(args)} → {done.returncode} (wanted {expect})\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.mosaic(*args, "--json").stdout)

    def log(self) -> str:
        return self.process.log()


def gateway_env(
    name: str,
    directory: Path,
    *,
    database_url: str,
    temporal_address: str,
    port: int,
    step_ca: StepCAServer | None = None,
    federation_port: int | None = None,
    tls: tuple[Path, Path] | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    data_dir = directory / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_address,
            "MOSAIC_TASK_QUEUE": unique_queue(f"gw-{name}"),
            "MOSAIC_DATA_DIR": str(data_dir),
            "MOSAIC_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "BETTER_AUTH_SECRET": secrets.token_urlsafe(32),
            "MOSAIC_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MOSAIC_API_URL": f"http://127.0.0.1:{port}",
            "MOSAIC_ENROLL_ALLOW_HTTP_LOOPBACK": "true",
            "MOSAIC_ENROLL_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MOSAIC_ENROLL_RATE_PER_MINUTE": "100000",
            "MOSAIC_ENROLL_BURST": "10000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if step_ca is not None:
        env.update(
            {
                "MOSAIC_CA": "step-ca",
                "STEP_CA_URL": step_ca.url,
                "STEP_CA_PROVISIONER_KEY_JSON": step_ca.files.provisioner_key_json.read_text(),
                "STEP_CA_ROOT_CERT_PATH": str(step_ca.files.root_cert),
            }
        )
    if federation_port is not None:
        env["MOSAIC_FEDERATION_LISTEN"] = f"127.0.0.1:{federation_port}"
    if tls is not None:
        env["MOSAIC_FEDERATION_TLS_CERT"], env["MOSAIC_FEDERATION_TLS_KEY"] = map(str, tls)
    env.update(extra)
    return env


@asynccontextmanager
async def running_gateway_process(
    name: str, env: dict[str, str], directory: Path
) -> AsyncIterator[GatewayProcess]:
    """`mosaic gateway run` (API, worker and, when configured, the federation listener)."""
    await upgrade_async(env["DATABASE_URL"])
    url = env["MOSAIC_API_URL"]
    port = url.rsplit(":", 1)[1]
    process = spawn_command(
        [MOSAIC, "gateway", "run", "--host", "127.0.0.1", "--port", port],
        env,
        directory / f"gateway-{name}.log",
    )
    listen = env.get("MOSAIC_FEDERATION_LISTEN")
    gateway = GatewayProcess(name, url, env, process, f"https://{listen}" if listen else None)
    try:
        await wait_until_serving(url, process)
        yield gateway
    finally:
        await stop_gracefully(process)


async def wait_until_serving(url: str, process: WorkerProcess) -> None:
    """Health answers and the worker polls its task queue."""
    async with httpx.AsyncClient(timeout=1) as http:
        for _ in range(600):
            assert process.process.poll() is None, process.log()[-3000:]
            try:
                healthy = (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.TransportError:
                healthy = False
            if healthy and "worker on task queue" in process.log():
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"gateway did not start:\n{process.log()[-3000:]}")


async def stop_gracefully(process: WorkerProcess, within: float = 20) -> None:
    if process.process.poll() is None:
        process.process.send_signal(signal.SIGINT)
        try:
            await process.wait(within=within)
        except TimeoutError:
            process.kill()
            raise


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def enroll_through_cli(
    b: GatewayProcess, a: GatewayProcess, scope: dict[str, Any], *, task: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """On B: a user, a peer, a grant (and ``task``, a task of that user) and a token; on A:
    `peer add`, which must end active. Returns (B's grant, A's peer)."""
    user = b.json(
        "user", "create", "--name", "Ann", "--email", f"ann-{uuid.uuid4().hex[:8]}@b.test"
    )
    cn = f"gw-a-{uuid.uuid4().hex[:8]}.example.com"
    peer = b.json("federation", "peer", "create", "--cn", cn, "--display-name", "Gateway A")
    grant = b.json(
        "federation",
        "grant",
        "create",
        "--user",
        user["id"],
        "--peer",
        peer["id"],
        "--scope",
        json.dumps(scope),
    )
    if task is not None:
        b.json("resource", "create", "tasks", "--owner", user["id"], "--title", task)
    token = b.json("federation", "grant", "token", grant["id"], "--ttl", "600")
    added = a.json("federation", "peer", "add", token["enrollmentUrl"])
    assert added["state"] == "active", added
    return grant, added
