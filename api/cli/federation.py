"""``mosaic federation …``: its subcommands load on first use, like the root's."""

from __future__ import annotations

import click

from api.cli.lazy import LazyGroup
from api.cli.main import example

COMMANDS = {
    "peer": (
        "api.cli.peers:peer",
        "Peers: remote gateways that enroll with us, or our credentials towards them.",
    ),
    "grant": ("api.cli.grants:grant", "Grants: what a peer may do on behalf of one of our users."),
    "audit": ("api.cli.records:audit", "Show the audit log, newest first."),
    "runs": (
        "api.cli.records:runs",
        "Workflow runs, newest first, with links into the Temporal UI.",
    ),
    "reconcile": (
        "api.cli.records:reconcile",
        "Run the reconcile schedule once and show what it repaired.",
    ),
    "keys": ("api.cli.keys:keys", "Sealed peer keys (AES-256-GCM under BETTER_AUTH_SECRET)."),
    "list": (
        "api.cli.remote:federation_list",
        "List the remote's rows of RESOURCE that this peer's grant lets it see.",
    ),
    "get": ("api.cli.remote:federation_get", "Show one row of RESOURCE from the peer's remote."),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    epilog=example("mosaic federation peer list", "mosaic federation grant list --status active"),
)
def federation() -> None:
    """Federation peers, grants, tokens, runs and the audit log."""
