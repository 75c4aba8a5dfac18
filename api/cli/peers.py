"""``mosaic federation peer create|list|show|add``."""

from __future__ import annotations

import time
from typing import Any

import click

from api.cli import exits
from api.cli.client import ApiClient, pass_api
from api.cli.main import example
from api.cli.options import UUID, drop_none, output_options, paging_options
from api.cli.output import Column, safe
from api.cli.remote import peer_call, peer_renew

PEERS = "/api/admin/federation/peers"
PEER_STATES = ("pending", "active", "degraded", "expired", "failed", "revoked")
PEER_COLUMNS = [
    Column("id", "ID", keep=True),
    Column("commonName", "CN"),
    Column("displayName", "NAME"),
    Column("state", "STATE"),
    Column("certNotAfter", "NOT AFTER", keep=True),
]
PEER_WIDE_COLUMNS = [
    *PEER_COLUMNS,
    Column("certSerial", "SERIAL"),
    Column("certFingerprint", "SHA-256"),
    Column("endpointUrl", "ENDPOINT"),
    Column("remoteGrantId", "REMOTE GRANT"),
    Column("remoteSubjectUserId", "REMOTE USER"),
    Column("failureReason", "FAILURE"),
    Column("createdAt", "CREATED", keep=True),
]


@click.group(
    epilog=example("mosaic federation peer list", "mosaic federation peer add <enrollment URL>")
)
def peer() -> None:
    """Peers: remote gateways that enroll with us, or our credentials towards them."""


@peer.command(
    "create",
    epilog=example(
        'mosaic federation peer create --cn gw-a.example.com --display-name "Gateway A" \\',
        "    --endpoint https://gw-a.example.com",
    ),
)
@click.option("--cn", "common_name", required=True, help="the CN the remote's CSR must carry")
@click.option("--display-name", required=True, help="how this gateway names the remote")
@click.option("--endpoint", "endpoint_url", default=None, help="the remote gateway's base URL")
@output_options
@pass_api
def peer_create(
    api: ApiClient, common_name: str, display_name: str, endpoint_url: str | None
) -> None:
    """Register a remote peer that will enroll with this gateway (state pending)."""
    body = {"commonName": common_name, "displayName": display_name, "endpointUrl": endpoint_url}
    api.show(api.call("POST", PEERS, json=body))


@peer.command(
    "list",
    epilog=example(
        "mosaic federation peer list --state active", "mosaic federation peer list --wide"
    ),
)
@click.option("--state", type=click.Choice(PEER_STATES), help="only peers in this state")
@paging_options(default=100)
@output_options
@pass_api
def peer_list(api: ApiClient, state: str | None, limit: int, cursor: str | None) -> None:
    """List peers, oldest first."""
    rows, next_cursor = api.list_page(PEERS, drop_none(state=state), limit, cursor)
    api.show_page(rows, PEER_WIDE_COLUMNS if api.wide else PEER_COLUMNS, next_cursor)


@peer.command(
    "show", epilog=example("mosaic federation peer show b4f963ed-4c3a-4d3d-992d-1a6cb3b05332")
)
@click.argument("peer_id", metavar="PEER", type=UUID)
@output_options
@pass_api
def peer_show(api: ApiClient, peer_id: str) -> None:
    """Show one peer; while its peer add runs, also the workflow's step."""
    api.show(api.call("GET", f"{PEERS}/{peer_id}"))


@peer.command(
    "add",
    epilog=example(
        "mosaic federation peer add \\",
        "    https://gw-b.example.com/api/federation/enrollment/<token> --display-name 'Gateway B'",
    ),
)
@click.argument("enrollment_url", metavar="ENROLLMENT_URL")
@click.option("--display-name", default=None, help="how this gateway names the remote")
@click.option("--no-wait", is_flag=True, help="return once the workflow has started")
@click.option(
    "--timeout",
    type=click.IntRange(1),
    default=600,
    show_default=True,
    help="seconds to wait for the end (exit 1 if still pending)",
)
@output_options
@pass_api
def peer_add(
    api: ApiClient, enrollment_url: str, display_name: str | None, no_wait: bool, timeout: int
) -> None:
    """Enroll this gateway with a remote one, from the enrollment URL its admin handed you.

    Generates a P-256 key here (sealed at rest), submits a CSR, verifies the
    certificate's grant and user OIDs, and stores an active peer. Exits 1 if
    the peer ends failed.
    """
    started = api.call(
        "POST",
        f"{PEERS}/enroll",
        json={"enrollmentUrl": enrollment_url, "displayName": display_name},
    )
    peer_id, workflow_id = started["peerId"], started["workflowId"]
    if no_wait:
        api.show(started)
        return
    if not api.as_json:
        click.echo(f"peer {peer_id}: workflow {safe(workflow_id)} started")
    final = follow_peer_add(api, peer_id, timeout)
    if final["state"] != "active":
        reason = final.get("failureReason") or final["state"]
        raise exits.CliError(f"peer add failed: {safe(reason)}", exits.FAILED)
    if api.as_json:
        api.show(final)
        return
    click.echo("enrolled:")
    for label, key in (
        ("peer id", "id"),
        ("common name", "commonName"),
        ("serial", "certSerial"),
        ("not after", "certNotAfter"),
        ("SHA-256", "certFingerprint"),
        ("grant", "remoteGrantId"),
        ("user", "remoteSubjectUserId"),
    ):
        click.echo(f"  {label:<12} {safe(str(final.get(key)))}")


def follow_peer_add(api: ApiClient, peer_id: str, timeout: int) -> dict[str, Any]:
    """Poll the peer, printing what it is about to do and each new step, until it settles."""
    announced = False
    last_step = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Any] = api.call("GET", f"{PEERS}/{peer_id}", params={"workflow": "true"})
        flow = found.get("workflow") or {}
        if flow.get("commonName") and not announced and not api.as_json:
            shown = {key: safe(str(value)) for key, value in flow.items()}
            click.echo(f"enrolling with {shown['remoteHost']} as CN {shown['commonName']}")
            click.echo(
                f"  for grant {shown['grantId']} (user {shown['subjectUserId']}),"
                f" token expires {shown['tokenExpiresAt']}"
            )
            announced = True
        step = flow.get("step")
        if step and step != last_step and not api.as_json:
            click.echo(f"  … {safe(step)}")
            last_step = step
        if found["state"] != "pending":
            if flow.get("failure") and not api.as_json:
                click.echo(f"  ✗ {safe(flow['failure'])}")
            return found
        time.sleep(0.3)
    raise exits.CliError(
        f"still pending after {timeout}s; see `mosaic federation peer show {peer_id}`",
        exits.FAILED,
    )


peer.add_command(peer_call)  # `peer call`: the remote answers, over mTLS
peer.add_command(peer_renew)
