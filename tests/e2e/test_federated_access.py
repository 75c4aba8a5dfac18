"""Two gateways as separate processes, over real mTLS (issue 11, "done when").

B serves its federation listener (TLS, client certificate required, B's CA only);
A enrolls with `peer add`, then calls B through its own admin API and the real CLI:
`peer call`, `federation list` (`--all`), `federation get`. Lanes: B on PostgreSQL with
real step-ca and A on SQLite; B on SQLite with the built-in CA and A on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from federation.ca.builtin import BuiltinCA
from federation.ca.stepca_init import issue_listener_certificate
from tests.support.gateway_processes import (
    GatewayProcess,
    enroll_through_cli,
    free_ports,
    gateway_env,
    running_gateway_process,
)
from tests.support.services import create_pg_database, drop_pg_database
from tests.support.stepca import StepCAServer

SCOPE = {
    "resources": ["tasks", "notes"],
    "excluded_resources": ["credentials"],
    "max_rows_per_query": 5,
}
EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_TLS = 3, 5, 8


@dataclass
class Pair:
    a: GatewayProcess
    b: GatewayProcess
    a_database: str


@pytest.fixture(scope="module", params=["B-pg-stepca_A-sqlite", "B-sqlite-builtin_A-pg"])
async def pair(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pair]:
    directory = tmp_path_factory.mktemp("federated")
    pg_name, pg_url = await create_pg_database()
    sqlite_url = f"sqlite+aiosqlite:///{directory / 'gw.db'}"
    a_port, b_port, listen = free_ports(3)
    temporal = temporal_env.client.service_client.config.target_host
    if request.param.startswith("B-pg"):
        b_env = gateway_env(
            "b",
            directory,
            database_url=pg_url,
            temporal_address=temporal,
            port=b_port,
            step_ca=step_ca,
            federation_port=listen,
            tls=issue_listener_certificate(step_ca.directory, ["127.0.0.1", "localhost"]),
        )
        a_url = sqlite_url
    else:
        b_env = gateway_env(
            "b",
            directory,
            database_url=sqlite_url,
            temporal_address=temporal,
            port=b_port,
            federation_port=listen,
        )
        a_url = pg_url
    a_env = gateway_env("a", directory, database_url=a_url, temporal_address=temporal, port=a_port)
    try:
        async with (
            running_gateway_process("b", b_env, directory) as b,
            running_gateway_process("a", a_env, directory) as a,
        ):
            yield Pair(a, b, a_url)
    finally:
        await drop_pg_database(pg_name)


def _enroll(pair: Pair, scope: dict[str, Any] = SCOPE) -> tuple[dict[str, Any], dict[str, Any]]:
    """On B: a user, a peer, a grant and a token; on A: `peer add`. Returns (grant, A's peer)."""
    grant, added = enroll_through_cli(pair.b, pair.a, scope)
    assert added["federationUrl"] == pair.b.federation_url
    return grant, added


def _tasks(b: GatewayProcess, owner: str, count: int) -> list[str]:
    return [
        b.json("resource", "create", "tasks", "--owner", owner, "--title", f"task {i}")["id"]
        for i in range(count)
    ]


async def test_a_lists_exactly_the_subject_users_tasks_capped_and_all_pages_through(
    pair: Pair,
) -> None:
    grant, peer = _enroll(pair)
    mine = _tasks(pair.b, grant["subjectUserId"], 12)
    other = pair.b.json(
        "user", "create", "--name", "Bo", "--email", f"bo-{uuid.uuid4().hex[:6]}@b.test"
    )
    _tasks(pair.b, other["id"], 2)

    capabilities = pair.a.json("federation", "peer", "call", peer["id"], "capabilities")
    assert capabilities["grantId"] == grant["id"]
    assert capabilities["subjectUserId"] == grant["subjectUserId"]
    first = pair.a.json("federation", "list", peer["id"], "tasks")
    assert [row["id"] for row in first] == mine[:5]  # capped at max_rows_per_query
    every = pair.a.json("federation", "list", peer["id"], "tasks", "--all")
    assert [row["id"] for row in every] == mine  # nothing repeated, nothing lost
    shown = pair.a.json("federation", "get", peer["id"], "tasks", mine[3])
    assert shown["title"] == "task 3"


async def test_scope_refusals_and_foreign_rows_have_their_exit_codes(pair: Pair) -> None:
    grant, peer = _enroll(pair)
    other = pair.b.json(
        "user", "create", "--name", "Cy", "--email", f"cy-{uuid.uuid4().hex[:6]}@b.test"
    )
    [foreign] = _tasks(pair.b, other["id"], 1)

    excluded = pair.a.mosaic("federation", "list", peer["id"], "credentials", expect=EXIT_REFUSED)
    assert "forbidden" in excluded.stderr and len(excluded.stderr.strip().splitlines()) == 1
    pair.a.mosaic("federation", "list", peer["id"], "teams", expect=EXIT_REFUSED)
    missing = pair.a.mosaic(
        "federation", "get", peer["id"], "tasks", foreign, expect=EXIT_NOT_FOUND
    )
    assert "not_found" in missing.stderr


async def test_a_certificate_for_grant_x_cannot_read_grant_ys_user(pair: Pair) -> None:
    grant_x, peer_x = _enroll(pair)
    grant_y, peer_y = _enroll(pair)
    ys = _tasks(pair.b, grant_y["subjectUserId"], 3)
    assert pair.a.json("federation", "list", peer_x["id"], "tasks", "--all") == []
    assert [
        r["id"] for r in pair.a.json("federation", "list", peer_y["id"], "tasks", "--all")
    ] == ys
    pair.a.mosaic("federation", "get", peer_x["id"], "tasks", ys[0], expect=EXIT_NOT_FOUND)


async def test_after_grant_revoke_on_b_as_next_request_is_refused_and_its_peer_revoked(
    pair: Pair,
) -> None:
    grant, peer = _enroll(pair)
    assert pair.a.json("federation", "list", peer["id"], "notes") == []
    pair.b.mosaic("federation", "grant", "revoke", grant["id"], "--reason", "contract ended")
    refused = pair.a.mosaic("federation", "list", peer["id"], "notes", expect=EXIT_REFUSED)
    assert "revoked" in refused.stderr
    shown = pair.a.json("federation", "peer", "show", peer["id"])
    assert shown["state"] == "revoked"
    again = pair.a.mosaic("federation", "list", peer["id"], "notes", expect=None)
    assert again.returncode != 0


async def test_a_listener_not_signed_by_the_pinned_ca_is_a_tls_refusal(
    pair: Pair, tmp_path: Path
) -> None:
    """A's side of the handshake: B's listener is only believed under the CA A pinned."""
    _, peer = _enroll(pair)
    impostor = BuiltinCA.open_or_create(tmp_path / "impostor").root_certificates()[0]
    from cryptography.hazmat.primitives.serialization import Encoding

    engine = create_async_engine(pair.a_database)
    try:
        async with engine.begin() as conn:
            peer_key = (
                peer["id"] if engine.dialect.name == "postgresql" else uuid.UUID(peer["id"]).hex
            )
            await conn.execute(
                text("UPDATE federation_peers SET remote_ca_pem = :pem WHERE id = :id"),
                {"pem": impostor.public_bytes(Encoding.PEM).decode(), "id": peer_key},
            )
    finally:
        await engine.dispose()
    refused = pair.a.mosaic(
        "federation", "peer", "call", peer["id"], "capabilities", expect=EXIT_TLS
    )
    assert "tls" in refused.stderr
