"""``mosaic demo``: two gateways on one machine, the whole enrollment story, end to end.

Everything runs for real: one Temporal dev server, gateways A and B as separate
processes (own SQLite database, API port, task queue, secrets), and every step
through the real ``mosaic`` CLI and REST API.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from api.cli.gateway import ensure_free, interrupt_on_sigterm, start_temporal
from api.cli.main import example
from api.devserver import stop_process
from federation.logredact import redact_tokens
from federation.runs import peer_add_workflow_id, redeem_workflow_id
from federation.settings import ConfigurationError
from federation.tokens import hash_token

MOSAIC = str(Path(sys.executable).parent / "mosaic")
# Written into every directory the demo creates: only such a directory is wiped on a rerun.
DEMO_MARKER = ".mosaic-demo"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DemoGateway:
    name: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mosaic(self, *args: str, show: bool = True) -> str:
        """Run a real ``mosaic`` command against this gateway, echoing it like a person would."""
        if show:
            # The token is the admin's to hand over, not to paste into tickets with this output.
            click.secho(f"  [{self.name}] $ mosaic {redact_tokens(' '.join(args))}", fg="cyan")
        done = subprocess.run(  # noqa: S603 - our own CLI
            [MOSAIC, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise click.ClickException(
                f"[{self.name}] mosaic {args[0]} failed: {done.stderr.strip()}"
            )
        return done.stdout

    def mosaic_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.mosaic("--json", *args)))


def _gateway(name: str, root: Path, temporal_address: str, ui_url: str) -> DemoGateway:
    port = _free_port()
    data_dir = root / name.lower()
    data_dir.mkdir(parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MOSAIC_", "DATABASE_URL", "STEP_CA_"))
    }
    env.update(
        MOSAIC_DATA_DIR=str(data_dir),
        MOSAIC_ADMIN_TOKEN=secrets.token_urlsafe(24),
        BETTER_AUTH_SECRET=secrets.token_urlsafe(32),
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_UI_URL=ui_url,
        MOSAIC_TASK_QUEUE=f"mosaic-demo-{name.lower()}",
        MOSAIC_PUBLIC_URL=f"http://127.0.0.1:{port}",
        MOSAIC_API_URL=f"http://127.0.0.1:{port}",
        MOSAIC_ENROLL_ALLOW_HTTP_LOOPBACK="true",
    )
    return DemoGateway(name, port, env, log=root / f"gateway-{name.lower()}.log")


def _start(gw: DemoGateway) -> None:
    gw.mosaic("db", "upgrade", show=False)
    handle = gw.log.open("wb")
    gw.process = subprocess.Popen(  # noqa: S603
        [MOSAIC, "gateway", "run", "--port", str(gw.port)],
        env=gw.env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{gw.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
        if gw.process.poll() is not None:
            break
    raise click.ClickException(f"gateway {gw.name} did not start; see {gw.log}")


def _say(step: str) -> None:
    click.secho(f"\n▶ {step}", bold=True)


def fresh_demo_dir(root: Path) -> None:
    """Empty ``root`` for a run; never touch a directory the demo did not make.

    A directory with the marker is wiped; an empty or missing one is used and gets
    the marker; anything else is refused (``--dir`` names it).
    """
    if root.exists() and not root.is_dir():
        raise ConfigurationError(f"--dir {root} is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not (root / DEMO_MARKER).is_file():
            raise ConfigurationError(
                f"--dir {root} is not empty and was not made by mosaic demo (no {DEMO_MARKER});"
                " choose another --dir"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("made by `mosaic demo`: wiped by its next run\n")


@click.command(
    epilog=example(
        "mosaic demo", "mosaic demo --keep-running --ui-port 8234", "mosaic demo --dir /tmp/demo"
    )
)
@click.option(
    "--dir",
    "root",
    default=".mosaic/demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="where the demo keeps both gateways' databases, secrets and logs and the Temporal"
    f" dev server's data. Created with a {DEMO_MARKER} marker and wiped by the next run;"
    " a directory holding anything else is refused",
)
@click.option("--ui-port", default=8233, show_default=True, help="Temporal Web UI port")
@click.option(
    "--keep-running", is_flag=True, help="leave everything up until Ctrl-C (explore the UI)"
)
def demo(root: Path, ui_port: int, keep_running: bool) -> None:
    """Two gateways, B lets A act for one of its users: watch A enroll with B.

    Starts one Temporal dev server and gateways A and B as separate processes
    (each its own SQLite database, port and task queue, in --dir), then runs the
    enrollment through the real `mosaic` CLI: B creates a user, a peer, a grant and
    a single-use token; A runs `peer add` with the URL; both sides are checked.
    Exit 0 when A's peer and B's grant are active with the same certificate serial.
    Ctrl-C or SIGTERM stops both gateways and the dev server.
    """
    os.umask(0o077)  # the gateways' secrets and databases are the owner's
    interrupt_on_sigterm()
    root = root.resolve()
    ensure_free({"--ui-port": ui_port})
    fresh_demo_dir(root)
    _say(f"Starting one Temporal dev server (UI http://127.0.0.1:{ui_port}) and gateways A and B")
    temporal_port = _free_port()
    temporal = start_temporal(
        root / "temporal",
        port=temporal_port,
        ui_port=ui_port,
        log_file=root / "temporal.log",
        labels={"port": "the demo's Temporal port; run it again", "ui_port": "--ui-port"},
    )
    address = f"127.0.0.1:{temporal_port}"
    ui_base = f"http://127.0.0.1:{ui_port}"
    a, b = _gateway("A", root, address, ui_base), _gateway("B", root, address, ui_base)
    ui = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows"
    try:
        _start(b)
        _start(a)
        click.echo(f"  gateway B  {b.url}  (SQLite in {b.env['MOSAIC_DATA_DIR']}, built-in CA)")
        click.echo(f"  gateway A  {a.url}  (SQLite in {a.env['MOSAIC_DATA_DIR']})")

        _say("On B: the admin registers a user, A as a pending peer, and a grant for that user")
        user = b.mosaic_json(
            "user", "create", "--name", "Ann Example", "--email", "ann@example.com"
        )
        peer = b.mosaic_json(
            "federation",
            "peer",
            "create",
            "--cn",
            "gateway-a.demo.example",
            "--display-name",
            "Gateway A",
            "--endpoint",
            a.url,
        )
        scope = json.dumps(
            {
                "resources": ["tasks", "notes"],
                "excluded_resources": ["credentials"],
                "max_rows_per_query": 100,
            }
        )
        grant = b.mosaic_json(
            "federation",
            "grant",
            "create",
            "--user",
            user["id"],
            "--peer",
            peer["id"],
            "--scope",
            scope,
        )
        click.echo(f"  grant {grant['id']} is {grant['status']} (acts for user {user['id']})")

        _say("On B: the admin mints a single-use enrollment token and hands the URL to A's admin")
        token = b.mosaic_json("federation", "grant", "token", grant["id"], "--ttl", "600")
        shown = redact_tokens(token["enrollmentUrl"])
        click.echo(f"  enrollment URL {shown} (expires {token['expiresAt']})")

        _say("On A: the admin runs `peer add` with that URL")
        click.echo(a.mosaic("federation", "peer", "add", token["enrollmentUrl"]).rstrip())

        _say("Checking both sides")
        a_peers = json.loads(a.mosaic("--json", "federation", "peer", "list", show=False))
        a_peer = next(p for p in a_peers if p.get("remoteGrantId") == grant["id"])
        b_grant = b.mosaic_json("federation", "grant", "show", grant["id"])
        ok = (
            a_peer["state"] == "active"
            and b_grant["status"] == "active"
            and a_peer["certSerial"] == b_grant["certSerial"]
        )
        click.echo(f"  A's peer  {a_peer['state']:<7} serial {a_peer['certSerial']}")
        click.echo(f"  B's grant {b_grant['status']:<7} serial {b_grant['certSerial']}")
        click.echo("\nIn the Temporal UI:")
        click.echo(f"  B's redeem run  {ui}/{redeem_workflow_id(hash_token(token['token']))}")
        click.echo(f"  A's peer-add run {ui}/{peer_add_workflow_id(a_peer['id'])}")
        if not ok:
            raise click.ClickException(
                "the two gateways do not agree: see the logs in " + str(root)
            )
        click.secho(
            "\n✔ A holds an active client certificate for B's grant; serials match.", fg="green"
        )
        if keep_running:
            click.echo("Everything stays up; Ctrl-C stops it.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for gw in (a, b):
            if gw.process is not None:
                stop_process(gw.process)
        stop_process(temporal)
