"""``mosaic temporal setup``: register Mosaic's search attributes on any Temporal server."""

from __future__ import annotations

import click

from api.cli.aio import run_async
from api.cli.main import example


@click.group(epilog=example("mosaic temporal setup --address temporal:7233"))
def temporal() -> None:
    """Temporal server preparation."""


@temporal.command(
    "setup", epilog=example("mosaic temporal setup --address temporal:7233 --namespace default")
)
@click.option(
    "--address",
    envvar="TEMPORAL_ADDRESS",
    default="127.0.0.1:7233",
    show_default=True,
    help="the Temporal frontend, host:port [env TEMPORAL_ADDRESS]",
)
@click.option(
    "--namespace",
    envvar="TEMPORAL_NAMESPACE",
    default="default",
    show_default=True,
    help="the namespace the gateway uses [env TEMPORAL_NAMESPACE]",
)
def setup(address: str, namespace: str) -> None:
    """Add the Keyword search attributes GrantId, PeerId and EnrollmentOutcome (idempotent)."""
    from temporalio.client import Client

    from workflows.setup import SEARCH_ATTRIBUTES, register_search_attributes

    async def run() -> list[str]:
        client = await Client.connect(address, namespace=namespace)
        return await register_search_attributes(client, namespace)

    try:
        added = run_async(run())
    except Exception as exc:  # noqa: BLE001 - connection, permission: say which, exit 1
        raise click.ClickException(f"cannot set up {address} ({namespace}): {exc}") from None
    present = ", ".join(SEARCH_ATTRIBUTES)
    if added:
        click.echo(f"added {', '.join(added)} on {address} ({namespace}); all present: {present}")
    else:
        click.echo(f"nothing to do on {address} ({namespace}): {present} already present")
