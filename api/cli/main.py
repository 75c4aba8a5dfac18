"""``mosaic``: the gateway's command line. Admin commands drive the REST API.

This module imports click alone: every subcommand is loaded on first use (see
``api.cli.lazy``), so ``mosaic --help`` and ``mosaic user list`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from api.cli.lazy import LazyGroup

COMMANDS = {
    "user": ("api.cli.users:user", "Users of this gateway; a grant acts for one of them."),
    "resource": (
        "api.cli.resources:resource",
        "Rows this gateway serves over federation: tasks, notes, credentials.",
    ),
    "federation": (
        "api.cli.federation:federation",
        "Federation peers, grants, tokens, runs and the audit log.",
    ),
    "gateway": ("api.cli.gateway:gateway", "Run the gateway (API, worker, dev services)."),
    "db": ("api.cli.db:db", "Database schema (Alembic migrations)."),
    "ca": ("api.cli.ca:ca", "Certificate authority set-up."),
    "temporal": ("api.cli.temporal:temporal", "Temporal server preparation."),
    "demo": (
        "api.cli.demo:demo",
        "Two gateways, B lets A act for one of its users: watch A enroll with B.",
    ),
}


def example(*lines: str) -> str:
    """A command's epilog: examples kept verbatim (``\\b`` stops click re-wrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _output(ctx: click.Context, param: click.Parameter, value: object) -> None:
    from api.cli.options import set_output

    set_output(ctx, param, value)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=example(
        "mosaic user list",
        "mosaic --data-dir .mosaic-a federation peer list --state active",
        "mosaic federation audit --outcome denied --limit 20 -o json",
    ),
)
@click.version_option(package_name="mosaic-federation", message="%(prog)s %(version)s")
@click.option(
    "--api-url",
    metavar="URL",
    default=None,
    help="the gateway's admin API [env MOSAIC_API_URL; else <data dir>/api-url;"
    " else http://127.0.0.1:8080]",
)
@click.option(
    "--data-dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the gateway's data dir: its admin-token and api-url [env MOSAIC_DATA_DIR]",
)
@click.option(
    "--api-ca-file",
    envvar="MOSAIC_API_CA_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM bundle trusted for an https API (default: the system's) [env MOSAIC_API_CA_FILE]",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(("table", "wide", "json")),
    callback=_output,
    expose_value=False,
    help="output format: table (fits 100 columns), wide (every column, uncut), json",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    callback=_output,
    expose_value=False,
    help="same as -o json; also accepted after the subcommand",
)
@click.option("--wide", is_flag=True, callback=_output, expose_value=False, help="same as -o wide")
@click.pass_context
def cli(
    ctx: click.Context, api_url: str | None, data_dir: Path | None, api_ca_file: Path | None
) -> None:
    """Mosaic federation gateway: admin commands drive its REST API.

    Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 conflict, 5 refused,
    6 unavailable, 7 unauthenticated, 8 TLS refused (docs/ADMIN-CLI.md).
    """
    from api.cli.client import ApiClient

    api = ctx.ensure_object(ApiClient)
    api.api_url, api.data_dir, api.ca_file = api_url, data_dir, api_ca_file


def main() -> None:
    try:
        cli(prog_name="mosaic")
    except Exception as exc:
        # Loaded only by the commands that read settings; one line naming the setting.
        settings = sys.modules.get("federation.settings")
        if settings is not None and isinstance(exc, settings.ConfigurationError):
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        raise
