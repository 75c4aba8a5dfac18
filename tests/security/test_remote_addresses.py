"""Where gateway A's peer add may connect (issue 15, point 5).

https to a private, link-local or loopback address is refused at once unless
MOSAIC_ENROLL_ALLOWED_NETWORKS names its network: literal IPs by the API (422, no
peer row), host names by the workflow after resolving them (the peer fails at once
and the remote sees no connection). The allowed case is shown for real: a TLS
remote on 127.0.0.1, reached by IP and by ``localhost`` (connected to the checked
address, TLS verified for the name). Gateways are real (uvicorn, worker, Temporal).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from federation.ca.builtin import BuiltinCA
from federation.db.migrate import upgrade_async
from tests.conftest import make_settings
from tests.support.dbsnap import fetch_all
from tests.support.gateways import Gateway, running_gateway, wait_for_peer
from tests.support.hostile import HostileRemote, hostile_remote, tls_server_files

PEERS = "/api/admin/federation/peers"
ENROLL = "/api/federation/enrollment"


async def _gateway(
    name: str,
    temporal_env: WorkflowEnvironment,
    directory: Path,
    overrides: dict[str, Any],
) -> Any:
    url = f"sqlite+aiosqlite:///{directory / 'gw.db'}"
    await upgrade_async(url)
    settings = make_settings(
        url, directory, temporal_address=temporal_env.client.service_client.config.target_host
    )
    return running_gateway(
        name,
        settings,
        database_url=url,
        data_dir=directory,
        temporal_env=temporal_env,
        ca=BuiltinCA.open_or_create(directory / "ca"),
        sealing_secret=f"{name}-sealing-secret-0123456789abcdef",
        overrides={"mosaic_enroll_submit_seconds": 4.0, **overrides},
    )


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
async def remote(
    tmp_path_factory: pytest.TempPathFactory, tls_dir: Path
) -> AsyncIterator[HostileRemote]:
    """A remote gateway served over TLS on 127.0.0.1 (certificate for localhost too)."""
    tls = tls_server_files(tls_dir)
    async with hostile_remote(tmp_path_factory.mktemp("remote-ca"), tls) as server:
        yield server


@pytest.fixture(scope="module")
async def strict(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """A: public addresses only for https (http loopback allowed, as in dev)."""
    directory = tmp_path_factory.mktemp("strict")
    async with await _gateway("strict", temporal_env, directory, {}) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def allowing(
    temporal_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    tls_dir: Path,
    remote: HostileRemote,
) -> AsyncIterator[Gateway]:
    """A: loopback, 10/8 and link-local allowed for https; plain http not allowed."""
    directory = tmp_path_factory.mktemp("allowing")
    overrides = {
        "mosaic_enroll_allow_http_loopback": False,
        "mosaic_enroll_allowed_networks": "127.0.0.0/8, ::1/128, 10.0.0.0/8, 169.254.0.0/16",
        "mosaic_enroll_ca_bundle": str(tls_dir / "ca.pem"),
    }
    async with await _gateway("allowing", temporal_env, directory, overrides) as gateway:
        yield gateway


def _url(host: str) -> str:
    return f"https://{host}{ENROLL}/{secrets.token_hex(32)}"


async def _peer_count(gateway: Gateway) -> int:
    return len(await fetch_all(gateway.engine, "SELECT id FROM federation_peers"))


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("10.0.0.1", "private"),
        ("169.254.1.1", "link-local"),
        ("127.0.0.1:{port}", "loopback"),
        ("[::1]:{port}", "loopback"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[fe80::1]", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("224.0.0.1", "multicast"),
    ],
)
async def test_https_to_a_non_public_address_is_refused_at_once_without_a_peer(
    strict: Gateway, remote: HostileRemote, host: str, kind: str
) -> None:
    before = await _peer_count(strict)
    url = _url(host.format(port=remote.server.port))
    refused = await strict.api.post(f"{PEERS}/enroll", json={"enrollmentUrl": url})

    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert f"a {kind} address; allow its network in MOSAIC_ENROLL_ALLOWED_NETWORKS" in detail
    assert url.rsplit("/", 1)[-1] not in detail
    assert await _peer_count(strict) == before


async def test_a_host_name_that_resolves_to_loopback_fails_the_peer_before_connecting(
    strict: Gateway, remote: HostileRemote
) -> None:
    url = remote.add(remote.honest()).replace("127.0.0.1", "localhost")
    started = await strict.api.post(f"{PEERS}/enroll", json={"enrollmentUrl": url})
    assert started.status_code == 202, started.text  # a name: checked once resolved

    peer = await wait_for_peer(strict, started.json()["peerId"], within=30)
    assert peer["state"] == "failed"
    assert peer["failureReason"] == (
        "localhost resolves to 127.0.0.1, a loopback address;"
        " allow its network in MOSAIC_ENROLL_ALLOWED_NETWORKS"
    )
    assert remote.case(url).requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_an_allowed_network_lets_https_enrollment_through(
    allowing: Gateway, remote: HostileRemote, host: str
) -> None:
    url = remote.add(remote.honest()).replace("127.0.0.1", host)
    started = await allowing.api.post(f"{PEERS}/enroll", json={"enrollmentUrl": url})
    assert started.status_code == 202, started.text

    peer = await wait_for_peer(allowing, started.json()["peerId"], within=30)
    assert peer["state"] == "active", peer
    assert peer["endpointUrl"] == f"https://{host}:{remote.server.port}"
    assert remote.case(url).requests == ["GET", "POST"]


@pytest.mark.parametrize("host", ["10.0.0.1", "169.254.1.1"])
async def test_an_allowed_network_accepts_its_literal_addresses(
    allowing: Gateway, temporal_env: WorkflowEnvironment, host: str
) -> None:
    started = await allowing.api.post(f"{PEERS}/enroll", json={"enrollmentUrl": _url(host)})
    assert started.status_code == 202, started.text
    # Nothing listens there: stop the run rather than let it retry.
    handle = temporal_env.client.get_workflow_handle(started.json()["workflowId"])
    await handle.terminate("test: address accepted, nothing to enroll with")


async def test_plain_http_to_loopback_without_the_setting_names_the_setting(
    allowing: Gateway,
) -> None:
    url = f"http://127.0.0.1:8080{ENROLL}/{secrets.token_hex(32)}"
    refused = await allowing.api.post(f"{PEERS}/enroll", json={"enrollmentUrl": url})

    assert refused.status_code == 422
    assert "MOSAIC_ENROLL_ALLOW_HTTP_LOOPBACK" in refused.json()["detail"]
