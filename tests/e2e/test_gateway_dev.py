"""`mosaic gateway dev` as a user runs it: a real process tree on embedded defaults,
driven by the real `mosaic` CLI, enrolling a CSR end to end with the built-in CA."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.support.faults import interruptible
from tests.support.pki import make_csr
from tests.support.stepca import free_port

MOSAIC = str(Path(sys.executable).parent / "mosaic")


@dataclass
class DevGateway:
    api_url: str
    ui_url: str
    temporal_address: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def cli(self, *args: str) -> str:
        env = dict(os.environ, MOSAIC_API_URL=self.api_url, MOSAIC_DATA_DIR=str(self.data_dir))
        env.pop("MOSAIC_ADMIN_TOKEN", None)  # the CLI must find it in the data dir
        done = subprocess.run(
            [MOSAIC, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def cli_json(self, *args: str) -> dict[str, str]:
        return dict(json.loads(self.cli("--json", *args)))


@pytest.fixture(scope="module")
def dev_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevGateway]:
    workdir = tmp_path_factory.mktemp("gateway-dev")
    port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOSAIC_", "DATABASE_URL"))}
    log = (workdir / "gateway.log").open("wb")
    process = subprocess.Popen(
        [
            MOSAIC,
            "gateway",
            "dev",
            "--port",
            str(port),
            "--temporal-port",
            str(temporal_port),
            "--ui-port",
            str(ui_port),
            "--federation-port",
            str(free_port()),
            "--data-dir",
            str(workdir / ".mosaic"),
        ],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=interruptible,
    )
    gateway = DevGateway(
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{ui_port}",
        f"127.0.0.1:{temporal_port}",
        workdir / ".mosaic",
        process,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{gateway.api_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (workdir / "gateway.log").read_text()
            asyncio.run(asyncio.sleep(0.1))
        else:
            pytest.fail(
                "gateway dev did not answer /healthz: " + (workdir / "gateway.log").read_text()
            )
        yield gateway
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def test_gateway_dev_prints_urls_and_serves_api_docs_and_temporal_ui(
    dev_gateway: DevGateway,
) -> None:
    log = (dev_gateway.data_dir.parent / "gateway.log").read_text()
    assert dev_gateway.api_url in log and dev_gateway.ui_url in log
    assert httpx.get(f"{dev_gateway.api_url}/docs").status_code == 200
    assert httpx.get(dev_gateway.ui_url, timeout=10).status_code == 200
    token_file = dev_gateway.data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600


async def test_cli_walks_user_peer_grant_token_and_a_csr_enrolls_visible_in_temporal(
    dev_gateway: DevGateway, tmp_path: Path
) -> None:
    user = dev_gateway.cli_json("user", "create", "--name", "Ann", "--email", "ann@example.com")
    peer = dev_gateway.cli_json(
        "federation", "peer", "create", "--cn", "gw-a.example.com", "--display-name", "Gateway A"
    )
    scope = tmp_path / "scope.json"
    scope.write_text(json.dumps({"resources": ["tasks"], "max_rows_per_query": 50}))
    grant = dev_gateway.cli_json(
        "federation",
        "grant",
        "create",
        "--user",
        user["id"],
        "--peer",
        peer["id"],
        "--scope",
        str(scope),
    )
    assert grant["status"] == "pending"
    issued = dev_gateway.cli("federation", "grant", "token", grant["id"], "--ttl", "600")
    url = next(line.split()[-1] for line in issued.splitlines() if "enrollment URL" in line)
    assert url.startswith(f"{dev_gateway.api_url}/api/federation/enrollment/")

    csr_pem, _ = make_csr("gw-a.example.com")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(url, json={"csrPem": csr_pem})
    assert response.status_code == 200, response.text

    listed = dev_gateway.cli("federation", "grant", "list", "--status", "active")
    assert grant["id"] in listed
    client = await Client.connect(dev_gateway.temporal_address)
    runs = [w async for w in client.list_workflows(f"GrantId = '{grant['id']}'")]
    assert len(runs) == 1 and runs[0].id.startswith("enroll-")
    # The API and the worker share one process and connection: the run started eagerly
    # (its first workflow task came back with the start) and finished in that one task.
    history = await client.get_workflow_handle(runs[0].id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.eager_execution_accepted
    kinds = [event.event_type for event in history.events]
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1, kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds

    log = (dev_gateway.data_dir.parent / "gateway.log").read_text()
    token = url.rsplit("/", 1)[-1]
    assert token not in log  # the access log shows a hash prefix instead


def test_cli_failure_exits_nonzero_with_the_servers_reason(dev_gateway: DevGateway) -> None:
    env = dict(
        os.environ, MOSAIC_API_URL=dev_gateway.api_url, MOSAIC_DATA_DIR=str(dev_gateway.data_dir)
    )
    done = subprocess.run(
        [MOSAIC, "federation", "grant", "show", "00000000-0000-0000-0000-000000000000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "404: grant not found" in done.stderr
