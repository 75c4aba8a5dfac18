"""``mosaic gateway dev|api``: run the gateway's processes."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from api.cli.aio import run_async


def _secret_file(path: Path) -> str:
    """Read a generated secret, creating it (mode 600) on first run."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def prepare_dev_environment(data_dir: Path, *, port: int, temporal_port: int, ui_port: int) -> None:
    """Fill the environment for embedded defaults; explicit variables win."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    defaults = {
        "MOSAIC_DATA_DIR": str(data_dir),
        "MOSAIC_ADMIN_TOKEN": _secret_file(data_dir / "admin-token"),
        "BETTER_AUTH_SECRET": _secret_file(data_dir / "sealing-secret"),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
        "MOSAIC_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


@click.group()
def gateway() -> None:
    """Run the gateway (API, worker, dev services)."""


@gateway.command("dev")
@click.option("--port", default=8080, show_default=True, help="API port")
@click.option("--data-dir", default=".mosaic", show_default=True, type=click.Path(path_type=Path))
@click.option("--temporal-port", default=7233, show_default=True)
@click.option("--ui-port", default=8233, show_default=True, help="Temporal Web UI port")
def dev(port: int, data_dir: Path, temporal_port: int, ui_port: int) -> None:
    """Everything on embedded defaults: SQLite, Temporal dev server, built-in CA, worker, API."""
    from api.devserver import start_dev_server, stop_process
    from api.rungateway import run_gateway
    from federation.db.migrate import upgrade
    from federation.settings import load_settings

    data_dir = data_dir.resolve()
    prepare_dev_environment(data_dir, port=port, temporal_port=temporal_port, ui_port=ui_port)
    settings = load_settings()
    upgrade(settings.effective_database_url)
    click.echo(f"database   {settings.effective_database_url} (migrated)")
    temporal = start_dev_server(
        data_dir / "temporal",
        port=temporal_port,
        ui_port=ui_port,
        log_file=data_dir / "temporal.log",
    )
    try:
        click.echo(
            f"temporal   {settings.temporal_address} (dev server, log {data_dir / 'temporal.log'})"
        )
        click.echo(f"API        http://127.0.0.1:{port}   docs http://127.0.0.1:{port}/docs")
        click.echo(f"Temporal UI {settings.temporal_ui_url}")
        click.echo(f"admin token in {data_dir / 'admin-token'} (the CLI finds it there)")
        click.echo("Ctrl-C stops everything.")
        run_async(run_gateway(settings, host="127.0.0.1", port=port, with_worker=True))
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(temporal)
        click.echo("stopped")


@gateway.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
def api(host: str, port: int) -> None:
    """The API alone (production: put it behind TLS)."""
    from api.rungateway import run_gateway
    from federation.settings import load_settings

    run_async(run_gateway(load_settings(), host=host, port=port, with_worker=False))


@gateway.command("worker")
def worker() -> None:
    """The Temporal worker alone: runs the enrollment workflows and their activities."""
    from federation.logsetup import configure_logging
    from federation.settings import load_settings
    from workflows.worker import run_worker

    settings = load_settings()
    configure_logging(settings.mosaic_log_format)
    try:
        run_async(run_worker(settings))
    except KeyboardInterrupt:
        pass


@gateway.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
def run(host: str, port: int) -> None:
    """API and worker in one process, against the configured Temporal and database."""
    from api.rungateway import run_gateway
    from federation.settings import load_settings

    try:
        run_async(run_gateway(load_settings(), host=host, port=port, with_worker=True))
    except KeyboardInterrupt:
        pass
