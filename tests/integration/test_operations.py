"""What ops rely on: readiness naming the failing part, metrics that move, run links,
search attributes set up on a bare Temporal server."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.devserver import temporal_cli_path
from federation.settings import Settings
from tests.support.factories import make_grant, make_token
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer, free_port

pytestmark = pytest.mark.usefixtures("worker")
MOSAIC = str(Path(sys.executable).parent / "mosaic")


async def _readyz(settings: Settings) -> httpx.Response:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/readyz")
    await app.state.gateway.close()
    return response


async def test_readyz_is_200_when_database_temporal_and_ca_answer(settings: Settings) -> None:
    response = await _readyz(settings)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "temporal": "ok", "ca": "ok"}


async def test_readyz_names_the_database_when_it_is_down(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"}
    )
    response = await _readyz(down)
    assert response.status_code == 503
    assert response.json()["detail"] == "not ready: database unreachable"


async def test_readyz_names_temporal_when_it_is_down(settings: Settings) -> None:
    response = await _readyz(
        settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    )
    assert response.status_code == 503
    assert response.json()["detail"] == "not ready: temporal unreachable"


async def test_readyz_names_the_ca_when_step_ca_is_down(
    settings: Settings, step_ca: StepCAServer
) -> None:
    files = step_ca.files
    down = settings.model_copy(
        update={
            "mosaic_ca": "step-ca",
            "step_ca_url": f"https://127.0.0.1:{free_port()}",
            "step_ca_provisioner_key_json": type(settings.step_ca_provisioner_key_json)(
                files.provisioner_key_json.read_text()
            ),
            "step_ca_root_cert_path": str(files.root_cert),
        }
    )
    response = await _readyz(down)
    assert response.status_code == 503
    assert response.json()["detail"] == "not ready: ca unreachable"


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0 if wanted else 0.0


async def test_metrics_count_enrollments_by_outcome_and_time_them(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    assert (
        await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    ).status_code == 200
    assert (
        await client.post(f"/api/federation/enrollment/{'f' * 64}", json={"csrPem": csr_pem})
    ).status_code == 404
    after = (await client.get("/metrics")).text
    allowed = ("mosaic_enrollments_total", {"outcome": "allowed", "status": "200"})
    denied = ("mosaic_enrollments_total", {"outcome": "denied", "status": "404"})
    for name, labels in (allowed, denied):
        assert _metric(after, name, **labels) == _metric(before, name, **labels) + 1
    assert (
        _metric(after, "mosaic_redeem_seconds_count")
        >= _metric(before, "mosaic_redeem_seconds_count") + 2
    )


async def test_runs_of_a_grant_link_into_the_temporal_ui(client: httpx.AsyncClient) -> None:
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    for _ in range(50):  # visibility is eventually consistent
        runs = (
            await client.get("/api/admin/federation/runs", params={"grant": grant["id"]})
        ).json()
        if runs:
            break
        await asyncio.sleep(0.1)
    assert len(runs) == 1
    assert runs[0]["workflowType"] == "RedeemEnrollment" and runs[0]["status"] == "COMPLETED"
    assert re.fullmatch(
        r"http://127\.0\.0\.1:8233/namespaces/default/workflows/enroll-[0-9a-f]{16}/.+/history",
        runs[0]["url"],
    )


async def test_temporal_setup_registers_search_attributes_once() -> None:
    bare = await WorkflowEnvironment.start_local(dev_server_existing_path=str(temporal_cli_path()))
    try:
        address = bare.client.service_client.config.target_host
        outputs = []
        for _ in range(2):
            done = await asyncio.create_subprocess_exec(
                MOSAIC,
                "temporal",
                "setup",
                "--address",
                address,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await done.communicate()
            assert done.returncode == 0, err.decode()
            outputs.append(out.decode())
        assert outputs[0].startswith("added GrantId, PeerId, EnrollmentOutcome")
        assert outputs[1].startswith("nothing to do")
    finally:
        await bare.shutdown()


async def test_request_id_reaches_the_audit_row_and_the_workflow_memo(
    client: httpx.AsyncClient, temporal_env: WorkflowEnvironment
) -> None:
    from federation.runs import redeem_workflow_id
    from federation.tokens import hash_token

    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    response = await client.post(
        f"/api/federation/enrollment/{token}",
        json={"csrPem": csr_pem},
        headers={"X-Request-ID": "ops-trace-42"},
    )
    assert response.headers["X-Request-ID"] == "ops-trace-42"
    audit = (await client.get("/api/admin/federation/audit", params={"grant": grant["id"]})).json()
    assert any(a["requestId"] == "ops-trace-42" and a["outcome"] == "allowed" for a in audit)
    described = await temporal_env.client.get_workflow_handle(
        redeem_workflow_id(hash_token(token))
    ).describe()
    assert await described.memo_value("requestId") == "ops-trace-42"
