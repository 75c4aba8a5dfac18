"""The real `mosaic` CLI, as a subprocess, against a real gateway (uvicorn, worker,
database of the lane): exit codes per class, output options after the subcommand,
paging, how it finds the gateway, and what reaches the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import ssl
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from federation.ca.base import CertificateAuthority
from federation.settings import Settings
from tests.conftest import SEALING_SECRET
from tests.support.factories import make_grant, make_peer, make_user, unique
from tests.support.gateways import Gateway, running_gateway
from tests.support.hostile import TLSFiles, tls_server_files
from tests.support.stepca import free_port

MOSAIC = str(Path(sys.executable).parent / "mosaic")
WIDTH = 100


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class CliGateway:
    gateway: Gateway
    workdir: Path
    data_dir: Path

    @property
    def token(self) -> str:
        return self.gateway.settings.mosaic_admin_token.get_secret_value()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    env.update(extra)
    return env


async def mosaic(*args: str, env: dict[str, str], cwd: Path | None = None) -> Run:
    process = await asyncio.create_subprocess_exec(
        MOSAIC,
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
async def cli_gateway(
    settings: Settings,
    database_url: str,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[CliGateway]:
    workdir = tmp_path_factory.mktemp("cli")
    data_dir = workdir / ".mosaic-a"
    data_dir.mkdir()
    async with running_gateway(
        "cli",
        settings,
        database_url=database_url,
        data_dir=data_dir,
        temporal_env=temporal_env,
        ca=ca,
        sealing_secret=SEALING_SECRET,
    ) as gateway:
        (data_dir / "admin-token").write_text(
            gateway.settings.mosaic_admin_token.get_secret_value() + "\n"
        )
        (data_dir / "api-url").write_text(gateway.url + "\n")
        yield CliGateway(gateway, workdir, data_dir)


def _env(gw: CliGateway) -> dict[str, str]:
    return clean_env(MOSAIC_API_URL=gw.gateway.url, MOSAIC_ADMIN_TOKEN=gw.token)


# --- exit codes --------------------------------------------------------------------


async def test_exit_codes_tell_usage_not_found_conflict_refused_and_unauthenticated(
    cli_gateway: CliGateway,
) -> None:
    env = _env(cli_gateway)
    usage = await mosaic("federation", "grant", "show", "not-a-uuid", env=env)
    assert usage.code == 2 and "'not-a-uuid' is not a UUID" in usage.err

    missing = await mosaic("federation", "grant", "show", str(uuid.uuid4()), env=env)
    assert missing.code == 3 and "404: grant not found" in missing.err

    email = f"{unique('dup')}@example.com"
    first = await mosaic("user", "create", "--name", "Dup", "--email", email, env=env)
    again = await mosaic("user", "create", "--name", "Dup", "--email", email, env=env)
    assert first.code == 0 and again.code == 4, again.err
    assert "409: a user with this email already exists" in again.err

    refused = await mosaic("user", "create", "--name", "X", "--email", "not an address", env=env)
    assert refused.code == 5 and "422: --email:" in refused.err

    cn_refused = await mosaic(
        "federation", "peer", "create", "--cn", "-bad-", "--display-name", "x", env=env
    )
    assert cn_refused.code == 5 and "422: --cn: " in cn_refused.err

    wrong = await mosaic("user", "list", env={**env, "MOSAIC_ADMIN_TOKEN": "wrong-token-xxxxxxxx"})
    assert wrong.code == 5
    assert "403: admin bearer token is not valid (token from MOSAIC_ADMIN_TOKEN)" in wrong.err

    nobody = await mosaic("user", "list", env=clean_env(), cwd=cli_gateway.workdir / "..")
    assert nobody.code == 7 and "no admin token" in nobody.err


async def test_unreachable_and_non_api_urls_exit_6_with_one_line(cli_gateway: CliGateway) -> None:
    env = clean_env(MOSAIC_ADMIN_TOKEN=cli_gateway.token)
    closed = f"http://127.0.0.1:{free_port()}"
    down = await mosaic("--api-url", closed, "user", "list", env=env)
    assert down.code == 6 and down.err.startswith(f"Error: cannot reach {closed}")

    for status, kind in ((200, "text/html"), (404, "text/html"), (200, "text/plain")):
        with _http_server(status, kind) as url:
            answered = await mosaic("--api-url", url, "federation", "peer", "list", env=env)
        assert answered.code == 6, answered.err
        assert answered.err.count("\n") == 1 and "Traceback" not in answered.err
        assert f"{url} does not look like a Mosaic gateway API" in answered.err
        assert f"answered {status} {kind}" in answered.err


async def test_an_untrusted_tls_certificate_exits_8_and_trusting_its_ca_gets_through(
    cli_gateway: CliGateway, tmp_path: Path
) -> None:
    env = clean_env(MOSAIC_ADMIN_TOKEN=cli_gateway.token)
    tls = tls_server_files(tmp_path)
    with _http_server(200, "text/html", tls=tls) as url:
        untrusted = await mosaic("--api-url", url, "user", "list", env=env)
        trusted = await mosaic(
            "--api-url", url, "--api-ca-file", str(tls.ca_bundle), "user", "list", env=env
        )
    assert untrusted.code == 8, untrusted.err
    assert f"Error: TLS refused by {url}: certificate not trusted: " in untrusted.err
    assert trusted.code == 6 and "does not look like a Mosaic gateway API" in trusted.err


# --- output ------------------------------------------------------------------------


async def test_json_and_output_options_work_after_the_subcommand(cli_gateway: CliGateway) -> None:
    env = _env(cli_gateway)
    user = await make_user(cli_gateway.gateway.api)
    for args in (
        ("user", "list", "--json"),
        ("user", "list", "-o", "json"),
        ("--json", "user", "list"),
        ("-o", "table", "user", "list", "--output=json"),
    ):
        done = await mosaic(*args, "--limit", "1000", env=env)
        assert done.code == 0, (args, done.err)
        assert user["id"] in {row["id"] for row in json.loads(done.out)}, args
    shown = await mosaic("user", "list", "--limit", "1000", "--wide", env=env)
    assert user["createdAt"] in shown.out  # wide: timestamps whole


async def test_remote_control_characters_reach_the_terminal_escaped(
    cli_gateway: CliGateway,
) -> None:
    env = _env(cli_gateway)
    evil = "Gateway \x1b[2J\x1b]0;owned\x07 B"
    cn = f"{unique('esc')}.example.com"
    created = await mosaic(
        "federation", "peer", "create", "--cn", cn, "--display-name", evil, env=env
    )
    assert created.code == 0, created.err
    listed = await mosaic("federation", "peer", "list", "--limit", "1000", "--wide", env=env)
    for out in (created.out, listed.out):
        assert "\x1b" not in out and "\x07" not in out
        assert "Gateway \\x1b[2J\\x1b]0;owned\\x07 B" in out
    as_json = await mosaic("federation", "peer", "list", "--limit", "1000", "--json", env=env)
    assert "\x1b" not in as_json.out
    assert evil in {p["displayName"] for p in json.loads(as_json.out)}


async def test_tables_fit_100_columns_without_trailing_whitespace(cli_gateway: CliGateway) -> None:
    api = cli_gateway.gateway.api
    env = _env(cli_gateway)
    long = "A display name far longer than any column could hold, " * 3
    peer = await make_peer(api, f"{unique('wide')}.a-rather-long-common-name.example.com")
    await api.post(
        "/api/admin/users", json={"name": long, "email": f"{unique('long')}@mosaic.local"}
    )
    grant = await make_grant(api)
    commands: list[tuple[str, ...]] = [
        ("user", "list", "--limit", "1000"),
        ("federation", "peer", "list", "--limit", "1000"),
        ("federation", "peer", "show", peer["id"]),
        ("federation", "grant", "list", "--limit", "1000"),
        ("federation", "grant", "show", grant["id"]),
        ("federation", "audit", "--limit", "200"),
        ("--help",),
        ("federation", "grant", "create", "--help"),
    ]
    for args in commands:
        done = await mosaic(*args, env=env)
        assert done.code == 0, (args, done.err)
        lines = done.out.splitlines()
        assert len(lines) > 1, args
        too_long = [line for line in lines if len(line) > WIDTH]
        trailing = [line for line in lines if line != line.rstrip()]
        assert not too_long and not trailing, (args, too_long, trailing)
    listed = await mosaic("user", "list", "--limit", "1000", env=env)
    assert long[:15] in listed.out and "…" in listed.out and long not in listed.out
    wide = await mosaic("user", "list", "--limit", "1000", "--wide", env=env)
    assert long.rstrip() in wide.out


# --- paging ------------------------------------------------------------------------


async def _walk(first: list[str], env: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Run a list command, then each `next:` command it prints, until there is none."""
    rows: list[dict[str, Any]] = []
    args, pages = first, 0
    while True:
        done = await mosaic(*args, env=env)
        assert done.code == 0, (args, done.err)
        rows += json.loads(done.out)
        pages += 1
        hint = re.search(r"^next: (.+)$", done.err, re.MULTILINE)
        if hint is None:
            return rows, pages
        command = shlex.split(hint.group(1))
        assert command[0] == "mosaic" and command[-2] == "--cursor"
        args = command[1:]


async def test_paging_walks_users_grants_and_audit_with_nothing_repeated_or_lost(
    cli_gateway: CliGateway,
) -> None:
    api = cli_gateway.gateway.api
    env = _env(cli_gateway)
    peer = await make_peer(api)
    user = await make_user(api)
    for _ in range(9):
        body = {
            "subjectUserId": user["id"],
            "peerId": peer["id"],
            "scope": {"resources": ["tasks"], "max_rows_per_query": 10},
        }
        assert (await api.post("/api/admin/federation/grants", json=body)).status_code == 201

    everyone = (await api.get("/api/admin/users")).json()
    limit = len(everyone) // 3 + 1
    rows, pages = await _walk(["user", "list", "--json", "--limit", str(limit)], env)
    assert [r["id"] for r in rows] == [u["id"] for u in everyone] and pages >= 3

    grants, pages = await _walk(
        ["federation", "grant", "list", "--peer", peer["id"], "--limit", "4", "-o", "json"], env
    )
    expected = (await api.get("/api/admin/federation/grants", params={"peer": peer["id"]})).json()
    assert [g["id"] for g in grants] == [g["id"] for g in expected] and len(grants) == 9
    assert pages == 3

    audit, pages = await _walk(
        ["federation", "audit", "--peer", peer["id"], "--limit", "4", "--json"], env
    )
    ids = [a["id"] for a in audit]
    assert len(ids) == 10 and ids == sorted(ids, reverse=True) and pages == 3
    assert [a["verb"] for a in audit].count("grant.create") == 9


async def test_a_cursor_of_another_list_is_refused_naming_the_option(
    cli_gateway: CliGateway,
) -> None:
    env = _env(cli_gateway)
    first = await mosaic("user", "list", "--limit", "1", env=env)
    cursor = shlex.split(re.findall(r"^next: (.+)$", first.err, re.MULTILINE)[0])[-1]
    crossed = await mosaic("federation", "peer", "list", "--cursor", cursor, env=env)
    assert crossed.code == 5 and "422: --cursor: not a cursor of this list" in crossed.err


# --- finding the gateway -----------------------------------------------------------


async def test_the_cli_finds_the_gateway_from_its_data_dir_however_it_is_named(
    cli_gateway: CliGateway,
) -> None:
    workdir, data_dir = cli_gateway.workdir, cli_gateway.data_dir
    user = await make_user(cli_gateway.gateway.api)
    ways: list[tuple[list[str], dict[str, str], Path]] = [
        (["--data-dir", ".mosaic-a"], clean_env(), workdir),
        (["--data-dir", str(data_dir)], clean_env(MOSAIC_ADMIN_TOKEN="another-gateway"), Path("/")),
        ([], clean_env(MOSAIC_DATA_DIR=str(data_dir)), workdir.parent),
        ([], clean_env(), data_dir),  # running inside the data dir
        (["--api-url", cli_gateway.gateway.url], clean_env(), workdir),  # found by its api-url
    ]
    for flags, env, cwd in ways:
        done = await mosaic(*flags, "user", "list", "--limit", "1000", "--json", env=env, cwd=cwd)
        assert done.code == 0, (flags, cwd, done.err)
        assert user["id"] in {u["id"] for u in json.loads(done.out)}


async def test_without_a_token_the_error_names_each_place_tried(cli_gateway: CliGateway) -> None:
    empty = cli_gateway.workdir / "elsewhere"
    empty.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{free_port()}"
    done = await mosaic("--api-url", url, "user", "list", env=clean_env(), cwd=empty)
    assert done.code == 7
    assert done.err.splitlines() == [
        f"Error: no admin token for {url}; tried:",
        "  MOSAIC_ADMIN_TOKEN: not set",
        "  MOSAIC_DATA_DIR: not set",
        f"  current directory: {empty / 'admin-token'} (missing)",
        f"  ./.mosaic: {empty / '.mosaic' / 'admin-token'} (missing)",
        f"  data dirs under {empty} whose api-url names {url}: none with a token",
        "Pass --data-dir (the gateway's data dir) or set MOSAIC_ADMIN_TOKEN.",
    ]


# --- helpers -----------------------------------------------------------------------


@contextmanager
def _http_server(status: int, content_type: str, tls: TLSFiles | None = None) -> Iterator[str]:
    """Not a Mosaic API: any web server answering ``content_type`` to every request."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
