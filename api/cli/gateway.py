"""``mosaic gateway dev|api|run|worker``: run the gateway's processes.

A start-up problem (a port taken, a setting that cannot work, a database or a dev
server that cannot be reached) is one line naming what to change, exit 2: it is
raised as ``ConfigurationError``, which ``mosaic`` prints as such.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import stat
import subprocess
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from api.cli.aio import run_async

if TYPE_CHECKING:
    from api.devserver import PortUnavailable
    from federation.settings import ConfigurationError, Settings

_Command = TypeVar("_Command", bound=Callable[..., Any])
# `gateway dev` writes its API URL here; the CLI reads it to find that gateway.
API_URL_FILE = "api-url"
# What the gateway keeps in its data dir (besides mosaic.db*), made private on every start.
_GATEWAY_ENTRIES = frozenset(
    {"admin-token", "sealing-secret", API_URL_FILE, "temporal.log", "temporal", "ca"}
)


def _secret_file(path: Path) -> str:
    """Read a generated secret, creating it (mode 600) on first run."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def make_private(data_dir: Path) -> None:
    """The data dir 0700 and the gateway's files in it 0600 (dirs 0700): secrets, databases.

    Refuses (``ConfigurationError``) a directory that is not the user's own or is shared
    like /tmp (sticky bit): making that 0700 would lock others out.
    """
    from federation.settings import ConfigurationError

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = data_dir.stat()
    if info.st_uid != os.getuid() or info.st_mode & stat.S_ISVTX:
        raise ConfigurationError(
            f"--data-dir {data_dir} is shared or not yours; give the gateway a directory"
            " of its own (it is made 0700)"
        )
    data_dir.chmod(0o700)
    for entry in data_dir.iterdir():
        if entry.name in _GATEWAY_ENTRIES or entry.name.startswith("mosaic.db"):
            _tighten(entry)


def _tighten(path: Path) -> None:
    """Take group and other access away from ``path`` and, for a directory, all below it."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return
    if info.st_mode & 0o077:
        path.chmod(stat.S_IMODE(info.st_mode) & ~0o077)
    if stat.S_ISDIR(info.st_mode):
        for child in path.iterdir():
            _tighten(child)


def prepare_dev_environment(
    data_dir: Path, *, port: int, temporal_port: int, ui_port: int, federation_port: int = 8443
) -> None:
    """Fill the environment for embedded defaults; explicit variables win, except Temporal's.

    ``gateway dev`` runs against the dev server it starts, never another Temporal.
    """
    make_private(data_dir)
    os.environ["MOSAIC_DATA_DIR"] = str(data_dir)
    ours = {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
    }
    for key, value in ours.items():
        if os.environ.get(key, value) != value:
            click.echo(f"note: {key}={os.environ[key]} ignored; gateway dev uses its own {value}")
        os.environ[key] = value
    defaults = {
        "MOSAIC_ADMIN_TOKEN": _secret_file(data_dir / "admin-token"),
        "BETTER_AUTH_SECRET": _secret_file(data_dir / "sealing-secret"),
        "MOSAIC_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MOSAIC_FEDERATION_LISTEN": f"127.0.0.1:{federation_port}",
        # A dev gateway federates with others on this machine: loopback is where they are.
        "MOSAIC_ENROLL_ALLOW_HTTP_LOOPBACK": "true",
        "MOSAIC_ENROLL_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def interrupt_on_sigterm() -> None:
    """SIGTERM stops the command as Ctrl-C does (``KeyboardInterrupt``): clean-up runs."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def run_until_stopped(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` until it ends, or Ctrl-C or SIGTERM cancels it (its clean-up runs).

    In the event loop SIGTERM cancels the main task, as asyncio does for Ctrl-C, so
    servers and the worker shut down in order, whatever SIGINT's disposition is.
    """

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await coro

    try:
        run_async(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        interrupt_on_sigterm()  # closing the loop reset it


def _port_problem(exc: PortUnavailable) -> ConfigurationError:
    from federation.settings import ConfigurationError

    if not exc.label.startswith("--"):  # not a flag: the label says what to do
        return ConfigurationError(str(exc))
    return ConfigurationError(f"port {exc.port} {exc.reason}; choose another with {exc.label}")


def ensure_free(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """Every port free to listen on, or the one line naming the port and its flag (the key)."""
    from api.devserver import PortUnavailable, ensure_ports_free

    try:
        ensure_ports_free(ports, host=host)
    except PortUnavailable as exc:
        raise _port_problem(exc) from None


def start_temporal(
    data_dir: Path, *, port: int, ui_port: int, log_file: Path, labels: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Our own Temporal dev server, serving; else the one line naming the port's flag."""
    from api.devserver import DevServerFailed, PortUnavailable, start_dev_server
    from federation.settings import ConfigurationError

    try:
        return start_dev_server(
            data_dir, port=port, ui_port=ui_port, log_file=log_file, labels=labels
        )
    except PortUnavailable as exc:
        raise _port_problem(exc) from None
    except DevServerFailed as exc:
        raise ConfigurationError(str(exc)) from None


def _checked_settings() -> Settings:
    """The settings, and a step-ca configuration that can work, or ``ConfigurationError``."""
    from federation.ca.factory import check_ca_settings
    from federation.settings import load_settings

    settings = load_settings()
    check_ca_settings(settings)
    return settings


def _proxy_options(command: _Command) -> _Command:
    # Behind a TLS proxy the client address (rate limit, logs) comes from X-Forwarded-For.
    command = click.option(
        "--forwarded-allow-ips",
        metavar="IPS",
        default=None,
        help="the proxies (comma-separated IPs or CIDRs) whose X-Forwarded-* headers"
        " --proxy-headers believes  [default: $FORWARDED_ALLOW_IPS, else 127.0.0.1]",
    )(command)
    return click.option(
        "--proxy-headers",
        is_flag=True,
        help="take the client address and scheme from X-Forwarded-For/-Proto (behind a proxy)",
    )(command)


@click.group()
def gateway() -> None:
    """Run the gateway (API, worker, dev services)."""


@gateway.command("dev")
@click.option("--port", default=8080, show_default=True, help="API port")
@click.option(
    "--data-dir",
    envvar="MOSAIC_DATA_DIR",
    default=".mosaic",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="SQLite database, secrets, built-in CA, Temporal dev server data, api-url"
    " [env MOSAIC_DATA_DIR]",
)
@click.option(
    "--temporal-port", default=7233, show_default=True, help="the Temporal dev server's port"
)
@click.option(
    "--ui-port",
    type=int,
    default=None,
    help="Temporal Web UI port  [default: --temporal-port + 1000, so 8233]",
)
@click.option(
    "--federation-port",
    default=8443,
    show_default=True,
    help="the federation listener's port (mTLS: remote peers call it with their certificate)",
)
def dev(
    port: int, data_dir: Path, temporal_port: int, ui_port: int | None, federation_port: int
) -> None:
    """Everything on embedded defaults: SQLite, Temporal dev server, built-in CA, worker, API.

    It starts its own Temporal dev server and never uses one it did not start: if a
    port is taken it stops at once (exit 2), naming the flag to change. The data dir
    is private (0700, files 0600) and gets the API URL in <data dir>/api-url.
    Ctrl-C or SIGTERM stops everything.
    """
    os.umask(0o077)  # before anything is created: secrets, databases and logs are the owner's
    interrupt_on_sigterm()
    ui_port = temporal_port + 1000 if ui_port is None else ui_port  # as Temporal's own default
    ensure_free(
        {
            "--port": port,
            "--temporal-port": temporal_port,
            "--ui-port": ui_port,
            "--federation-port": federation_port,
        }
    )
    data_dir = data_dir.resolve()
    prepare_dev_environment(
        data_dir,
        port=port,
        temporal_port=temporal_port,
        ui_port=ui_port,
        federation_port=federation_port,
    )
    settings = _checked_settings()
    from api.devserver import stop_process
    from api.federation_listener import ca_bundle
    from api.rungateway import run_gateway
    from federation.db.migrate import upgrade

    upgrade(settings.effective_database_url)
    log_file = data_dir / "temporal.log"
    temporal = start_temporal(
        data_dir / "temporal",
        port=temporal_port,
        ui_port=ui_port,
        log_file=log_file,
        labels={"port": "--temporal-port", "ui_port": "--ui-port"},
    )
    api_url = f"http://127.0.0.1:{port}"
    try:
        (data_dir / API_URL_FILE).write_text(api_url + "\n")
        click.echo(f"database   {settings.effective_database_url} (migrated)")
        click.echo(f"temporal   {settings.temporal_address} (dev server, log {log_file})")
        click.echo(f"API        {api_url}   docs {api_url}/docs")
        click.echo(
            f"federation {settings.federation_url} (mTLS; peers pin the CA in"
            f" {ca_bundle(settings)})"
        )
        click.echo(f"Temporal UI {settings.temporal_ui_url}")
        click.echo(f"admin token in {data_dir / 'admin-token'} (the CLI finds it there)")
        click.echo("Ctrl-C stops everything.")
        run_until_stopped(run_gateway(settings, host="127.0.0.1", port=port, with_worker=True))
    finally:
        stop_process(temporal)
        click.echo("stopped")


@gateway.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@_proxy_options
def api(host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str | None) -> None:
    """The API alone (production: put it behind TLS)."""
    _serve(host, port, with_worker=False, proxy_headers=proxy_headers, allow=forwarded_allow_ips)


@gateway.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@_proxy_options
def run(host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str | None) -> None:
    """API and worker in one process, against the configured Temporal and database."""
    _serve(host, port, with_worker=True, proxy_headers=proxy_headers, allow=forwarded_allow_ips)


def _serve(
    host: str, port: int, *, with_worker: bool, proxy_headers: bool, allow: str | None
) -> None:
    settings = _checked_settings()  # before the heavy imports: a bad setting fails fast
    ensure_free({"--port": port}, host=host)
    if settings.mosaic_federation_listen:
        listen_host, _, listen_port = settings.mosaic_federation_listen.rpartition(":")
        if listen_port.isdigit():
            ensure_free({"MOSAIC_FEDERATION_LISTEN": int(listen_port)}, host=listen_host)
    from api.rungateway import run_gateway

    gateway = run_gateway(
        settings,
        host=host,
        port=port,
        with_worker=with_worker,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=allow,
    )
    run_until_stopped(gateway)


@gateway.command("worker")
def worker() -> None:
    """The Temporal worker alone: runs the enrollment workflows and their activities.

    While Temporal is unreachable it waits, saying so every few seconds.
    """
    settings = _checked_settings()  # before the heavy imports: a bad setting fails fast
    from api.openfiles import raise_open_files_limit
    from federation.logsetup import configure_logging
    from workflows.worker import run_worker

    configure_logging(settings.mosaic_log_format)
    raise_open_files_limit()
    run_until_stopped(run_worker(settings))
