"""``mosaic federation grant create|list|show|revoke|token``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from api.cli.client import ApiClient, pass_api
from api.cli.main import example
from api.cli.options import UUID, drop_none, output_options, paging_options
from api.cli.output import Column, safe

GRANTS = "/api/admin/federation/grants"
GRANT_STATUSES = ("pending", "active", "revoked", "expired")
GRANT_COLUMNS = [
    Column("id", "ID", keep=True),
    Column("status", "STATUS"),
    Column("peerId", "PEER"),
    Column("createdAt", "CREATED", keep=True),
]
GRANT_WIDE_COLUMNS = [
    *GRANT_COLUMNS,
    Column("subjectUserId", "USER"),
    Column("certSerial", "SERIAL"),
    Column("certNotAfter", "NOT AFTER", keep=True),
    Column("reason", "REASON"),
    Column("scope", "SCOPE"),
]


@click.group(
    epilog=example("mosaic federation grant list", "mosaic federation grant token <grant id>")
)
def grant() -> None:
    """Grants: what a peer may do on behalf of one of our users."""


def _read_scope(value: str) -> object:
    path = Path(value)
    text = path.read_text() if not value.lstrip().startswith("{") and path.is_file() else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"neither a JSON file nor JSON: {exc.msg}", param_hint="'--scope'"
        ) from None


@grant.command(
    "create",
    epilog=example(
        "mosaic federation grant create --user 59d73628-eec7-4a00-8ee6-a5556ab3e352 \\",
        "    --peer b4f963ed-4c3a-4d3d-992d-1a6cb3b05332 --scope scope.json",
        "mosaic federation grant create --user … --peer … \\",
        """    --scope '{"resources": ["tasks"], "max_rows_per_query": 100}'""",
    ),
)
@click.option("--user", "user_id", type=UUID, required=True, help="the user the peer acts for")
@click.option("--peer", "peer_id", type=UUID, required=True, help="the peer (from `peer create`)")
@click.option("--scope", required=True, help="what the peer may read: a JSON file or inline JSON")
@output_options
@pass_api
def grant_create(api: ApiClient, user_id: str, peer_id: str, scope: str) -> None:
    """Create a pending grant; mint a token for it with `grant token`."""
    body = {"subjectUserId": user_id, "peerId": peer_id, "scope": _read_scope(scope)}
    api.show(api.call("POST", GRANTS, json=body))


@grant.command(
    "list",
    epilog=example(
        "mosaic federation grant list --status active",
        "mosaic federation grant list --peer b4f963ed-4c3a-4d3d-992d-1a6cb3b05332 --wide",
    ),
)
@click.option("--peer", "peer_id", type=UUID, default=None, help="only grants of this peer")
@click.option("--status", type=click.Choice(GRANT_STATUSES), help="only grants in this status")
@paging_options(default=100)
@output_options
@pass_api
def grant_list(
    api: ApiClient, peer_id: str | None, status: str | None, limit: int, cursor: str | None
) -> None:
    """List grants, oldest first."""
    params = drop_none(peer=peer_id, status=status)
    rows, next_cursor = api.list_page(GRANTS, params, limit, cursor)
    api.show_page(rows, GRANT_WIDE_COLUMNS if api.wide else GRANT_COLUMNS, next_cursor)


@grant.command(
    "show", epilog=example("mosaic federation grant show 182173f1-9087-483f-a397-d4366ab10585")
)
@click.argument("grant_id", metavar="GRANT", type=UUID)
@output_options
@pass_api
def grant_show(api: ApiClient, grant_id: str) -> None:
    """Show one grant: status, scope, certificate."""
    api.show(api.call("GET", f"{GRANTS}/{grant_id}"))


@grant.command(
    "revoke",
    epilog=example(
        "mosaic federation grant revoke 182173f1-9087-483f-a397-d4366ab10585 \\",
        "    --reason 'contract ended'",
    ),
)
@click.argument("grant_id", metavar="GRANT", type=UUID)
@click.option("--reason", default=None, help="why (audited; at most 500 characters)")
@output_options
@pass_api
def grant_revoke(api: ApiClient, grant_id: str, reason: str | None) -> None:
    """Revoke a grant for good, and its certificate at the CA (exit 4 if already revoked)."""
    api.show(api.call("PATCH", f"{GRANTS}/{grant_id}/revoke", json={"reason": reason}))


@grant.command(
    "token",
    epilog=example("mosaic federation grant token 182173f1-9087-483f-a397-d4366ab10585 --ttl 600"),
)
@click.argument("grant_id", metavar="GRANT", type=UUID)
@click.option(
    "--ttl", type=click.IntRange(1, 900), default=900, show_default=True, help="seconds, 1..900"
)
@output_options
@pass_api
def grant_token(api: ApiClient, grant_id: str, ttl: int) -> None:
    """Mint a single-use enrollment token for a pending grant; it is shown once."""
    data = api.call("POST", f"{GRANTS}/{grant_id}/tokens", json={"ttlSeconds": ttl})
    if api.as_json:
        api.show(data)
        return
    click.echo(f"token:          {safe(data['token'])}")
    click.echo(f"expires at:     {safe(data['expiresAt'])}")
    click.echo(f"enrollment URL: {safe(data['enrollmentUrl'])}")
    if data.get("withdrawnTokens"):
        click.echo(f"withdrawn:      {data['withdrawnTokens']} older unused token(s) of this grant")
    click.echo("Hand the URL to the remote operator; it works once and is not shown again.")


CERTIFICATE_COLUMNS = [
    Column("serial", "SERIAL", keep=True),
    Column("state", "STATE"),
    Column("purpose", "PURPOSE"),
    Column("notAfter", "NOT AFTER", keep=True),
    Column("createdAt", "CREATED", keep=True),
]
CERTIFICATE_WIDE_COLUMNS = [
    *CERTIFICATE_COLUMNS,
    Column("fingerprint", "SHA-256"),
    Column("revokeAfter", "REVOKE AFTER", keep=True),
    Column("revokedAt", "REVOKED AT", keep=True),
    Column("revocationReason", "REASON"),
    Column("issuedBy", "ISSUED BY"),
]


@grant.command(
    "certificates",
    epilog=example(
        "mosaic federation grant certificates 182173f1-9087-483f-a397-d4366ab10585",
        "mosaic federation grant certificates 182173f1-9087-483f-a397-d4366ab10585 --wide",
    ),
)
@click.argument("grant_id", metavar="GRANT", type=UUID)
@output_options
@pass_api
def grant_certificates(api: ApiClient, grant_id: str) -> None:
    """Every certificate the CA was asked to sign for this grant (the ledger), newest
    first: the one pinned (active), superseded ones in their overlap, and revoked ones."""
    rows = api.call("GET", f"{GRANTS}/{grant_id}/certificates")
    api.show(rows, CERTIFICATE_WIDE_COLUMNS if api.wide else CERTIFICATE_COLUMNS)
