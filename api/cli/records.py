"""``mosaic federation audit|runs|reconcile``: what happened, and repairing it."""

from __future__ import annotations

import click

from api.cli.client import ApiClient, pass_api
from api.cli.main import example
from api.cli.options import UUID, drop_none, output_options, paging_options
from api.cli.output import Column

AUDIT_COLUMNS = [
    Column("createdAt", "TIME", keep=True),
    Column("actor", "ACTOR"),
    Column("verb", "VERB"),
    Column("outcome", "OUTCOME"),
    Column("statusCode", "CODE"),
    Column("reason", "REASON"),
]
AUDIT_WIDE_COLUMNS = [
    *AUDIT_COLUMNS,
    Column("grantId", "GRANT"),
    Column("peerId", "PEER"),
    Column("certSerial", "SERIAL"),
    Column("requestId", "REQUEST ID"),
]
RUN_COLUMNS = [
    Column("workflowId", "WORKFLOW ID", keep=True),
    Column("workflowType", "TYPE"),
    Column("status", "STATUS"),
    Column("startTime", "STARTED", keep=True),
]
RUN_WIDE_COLUMNS = [*RUN_COLUMNS, Column("closeTime", "CLOSED"), Column("url", "URL")]


@click.command(
    epilog=example(
        "mosaic federation audit --outcome denied",
        "mosaic federation audit --grant 182173f1-9087-483f-a397-d4366ab10585 --wide",
    )
)
@click.option("--grant", "grant_id", type=UUID, default=None, help="only rows of this grant")
@click.option("--peer", "peer_id", type=UUID, default=None, help="only rows of this peer")
@click.option("--outcome", type=click.Choice(["allowed", "denied"]), help="only this outcome")
@paging_options(default=50)
@output_options
@pass_api
def audit(
    api: ApiClient,
    grant_id: str | None,
    peer_id: str | None,
    outcome: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Show the audit log, newest first."""
    params = drop_none(grant=grant_id, peer=peer_id, outcome=outcome)
    rows, next_cursor = api.list_page("/api/admin/federation/audit", params, limit, cursor)
    api.show_page(rows, AUDIT_WIDE_COLUMNS if api.wide else AUDIT_COLUMNS, next_cursor)


@click.command(
    epilog=example(
        "mosaic federation runs --grant 182173f1-9087-483f-a397-d4366ab10585",
        "mosaic federation runs --all --limit 10 --wide",
    )
)
@click.option("--grant", "grant_id", type=UUID, default=None, help="only runs of this grant")
@click.option("--peer", "peer_id", type=UUID, default=None, help="only runs of this peer")
@click.option(
    "--include-reconcile",
    "--all",
    "include_reconcile",
    is_flag=True,
    help="also the scheduled reconcile runs (left out by default)",
)
@paging_options(default=50, maximum=500)
@output_options
@pass_api
def runs(
    api: ApiClient,
    grant_id: str | None,
    peer_id: str | None,
    include_reconcile: bool,
    limit: int,
    cursor: str | None,
) -> None:
    """Workflow runs, newest first, with links into the Temporal UI."""
    params = drop_none(grant=grant_id, peer=peer_id)
    params["reconcile"] = "true" if include_reconcile else "false"
    rows, next_cursor = api.list_page("/api/admin/federation/runs", params, limit, cursor)
    api.show_page(rows, RUN_WIDE_COLUMNS if api.wide else RUN_COLUMNS, next_cursor)


@click.command(epilog=example("mosaic federation reconcile --now"))
@click.option("--now", "now", is_flag=True, required=True, help="trigger the schedule once")
@output_options
@pass_api
def reconcile(api: ApiClient, now: bool) -> None:
    """Run the reconcile schedule once and show what it repaired."""
    api.show(api.call("POST", "/api/admin/federation/reconcile"))
