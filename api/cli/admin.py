"""``mosaic user …`` and ``mosaic federation peer|grant|audit …``: thin drivers of the admin API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from api.cli.client import ApiClient, pass_api

PEER_COLUMNS = ["id", "commonName", "state", "certSerial", "certNotAfter", "certFingerprint"]
GRANT_COLUMNS = ["id", "status", "peerId", "subjectUserId", "certSerial", "createdAt"]


@click.group()
def user() -> None:
    """Users (grants act on behalf of one)."""


@user.command("create")
@click.option("--name", required=True)
@click.option("--email", required=True)
@pass_api
def user_create(api: ApiClient, name: str, email: str) -> None:
    api.show(api.call("POST", "/api/admin/users", json={"name": name, "email": email}), [])


@user.command("list")
@pass_api
def user_list(api: ApiClient) -> None:
    api.show(api.call("GET", "/api/admin/users"), ["id", "name", "email", "createdAt"])


@click.group()
def federation() -> None:
    """Federation peers, grants, tokens and the audit log."""


@federation.group()
def peer() -> None:
    """Peers: remote gateways that enroll with us, or our credentials towards them."""


@peer.command("create")
@click.option("--cn", "common_name", required=True, help="the CN the remote's CSR must carry")
@click.option("--display-name", required=True)
@click.option("--endpoint", "endpoint_url", default=None, help="the remote gateway's base URL")
@pass_api
def peer_create(
    api: ApiClient, common_name: str, display_name: str, endpoint_url: str | None
) -> None:
    """Register a remote peer that will enroll with this gateway (state pending)."""
    body = {"commonName": common_name, "displayName": display_name, "endpointUrl": endpoint_url}
    api.show(api.call("POST", "/api/admin/federation/peers", json=body), [])


@peer.command("list")
@click.option("--state", type=click.Choice(["pending", "active", "failed", "revoked"]))
@pass_api
def peer_list(api: ApiClient, state: str | None) -> None:
    params = {"state": state} if state else {}
    api.show(api.call("GET", "/api/admin/federation/peers", params=params), PEER_COLUMNS)


@peer.command("show")
@click.argument("peer_id")
@pass_api
def peer_show(api: ApiClient, peer_id: str) -> None:
    api.show(api.call("GET", f"/api/admin/federation/peers/{peer_id}"), [])


@federation.group()
def grant() -> None:
    """Grants: what a peer may do on behalf of one of our users."""


def _read_scope(value: str) -> object:
    path = Path(value)
    text = path.read_text() if not value.lstrip().startswith("{") and path.is_file() else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"scope is neither a JSON file nor JSON: {exc.msg}") from None


@grant.command("create")
@click.option("--user", "user_id", required=True, help="subject user id")
@click.option("--peer", "peer_id", required=True)
@click.option("--scope", required=True, help="a JSON file or inline JSON")
@pass_api
def grant_create(api: ApiClient, user_id: str, peer_id: str, scope: str) -> None:
    """Create a pending grant."""
    body = {"subjectUserId": user_id, "peerId": peer_id, "scope": _read_scope(scope)}
    api.show(api.call("POST", "/api/admin/federation/grants", json=body), [])


@grant.command("list")
@click.option("--peer", "peer_id", default=None)
@click.option("--status", type=click.Choice(["pending", "active", "revoked", "expired"]))
@pass_api
def grant_list(api: ApiClient, peer_id: str | None, status: str | None) -> None:
    params = {k: v for k, v in (("peer", peer_id), ("status", status)) if v}
    api.show(api.call("GET", "/api/admin/federation/grants", params=params), GRANT_COLUMNS)


@grant.command("show")
@click.argument("grant_id")
@pass_api
def grant_show(api: ApiClient, grant_id: str) -> None:
    api.show(api.call("GET", f"/api/admin/federation/grants/{grant_id}"), [])


@grant.command("revoke")
@click.argument("grant_id")
@click.option("--reason", default=None)
@pass_api
def grant_revoke(api: ApiClient, grant_id: str, reason: str | None) -> None:
    """Revoke a grant for good; the reason is audited."""
    path = f"/api/admin/federation/grants/{grant_id}/revoke"
    api.show(api.call("PATCH", path, json={"reason": reason}), [])


@grant.command("token")
@click.argument("grant_id")
@click.option("--ttl", type=int, default=900, show_default=True, help="seconds, at most 900")
@pass_api
def grant_token(api: ApiClient, grant_id: str, ttl: int) -> None:
    """Mint a single-use enrollment token; it is shown once."""
    path = f"/api/admin/federation/grants/{grant_id}/tokens"
    data = api.call("POST", path, json={"ttlSeconds": ttl})
    if api.as_json:
        api.show(data, [])
        return
    click.echo(f"token:          {data['token']}")
    click.echo(f"expires at:     {data['expiresAt']}")
    click.echo(f"enrollment URL: {data['enrollmentUrl']}")
    click.echo("Hand the URL to the remote operator; it works once and is not shown again.")


@federation.command("audit")
@click.option("--grant", "grant_id", default=None)
@click.option("--peer", "peer_id", default=None)
@click.option("--outcome", type=click.Choice(["allowed", "denied"]))
@pass_api
def audit(api: ApiClient, grant_id: str | None, peer_id: str | None, outcome: str | None) -> None:
    """Show the audit log, newest first."""
    params = {k: v for k, v in (("grant", grant_id), ("peer", peer_id), ("outcome", outcome)) if v}
    columns = ["createdAt", "actor", "verb", "outcome", "statusCode", "grantId", "reason"]
    api.show(api.call("GET", "/api/admin/federation/audit", params=params), columns)


@peer.command("add")
@click.argument("enrollment_url")
@click.option("--display-name", default=None, help="how this gateway names the remote")
@click.option("--no-wait", is_flag=True, help="return once the workflow has started")
@click.option("--timeout", default=600, show_default=True, help="seconds to wait for the end")
@pass_api
def peer_add(
    api: ApiClient, enrollment_url: str, display_name: str | None, no_wait: bool, timeout: int
) -> None:
    """Enroll this gateway with a remote one, from the enrollment URL its admin handed you.

    Generates a P-256 key here (sealed at rest), submits a CSR, verifies the
    certificate's grant and user OIDs, and stores an active peer.
    """
    started = api.call(
        "POST",
        "/api/admin/federation/peers/enroll",
        json={"enrollmentUrl": enrollment_url, "displayName": display_name},
    )
    peer_id, workflow_id = started["peerId"], started["workflowId"]
    if no_wait:
        api.show(started, [])
        return
    click.echo(f"peer {peer_id}: workflow {workflow_id} started")
    final = follow_peer_add(api, peer_id, timeout)
    if final["state"] != "active":
        raise click.ClickException(
            f"peer add failed: {final.get('failureReason') or final['state']}"
        )
    if api.as_json:
        api.show(final, [])
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
        click.echo(f"  {label:<12} {final.get(key)}")


def follow_peer_add(api: ApiClient, peer_id: str, timeout: int) -> dict[str, Any]:
    """Poll the peer, printing what it is about to do and each new step, until it settles."""
    announced = False
    last_step = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peer: dict[str, Any] = api.call(
            "GET", f"/api/admin/federation/peers/{peer_id}", params={"workflow": "true"}
        )
        flow = peer.get("workflow") or {}
        if flow.get("commonName") and not announced and not api.as_json:
            click.echo(
                f"enrolling with {flow['remoteHost']} as CN {flow['commonName']}\n"
                f"  for grant {flow['grantId']} (user {flow['subjectUserId']}),"
                f" token expires {flow['tokenExpiresAt']}"
            )
            announced = True
        step = flow.get("step")
        if step and step != last_step and not api.as_json:
            click.echo(f"  … {step}")
            last_step = step
        if peer["state"] != "pending":
            if flow.get("failure") and not api.as_json:
                click.echo(f"  ✗ {flow['failure']}")
            return peer
        time.sleep(0.3)
    raise click.ClickException(
        f"still pending after {timeout}s; see `mosaic federation peer show {peer_id}`"
    )


@federation.command("reconcile")
@click.option("--now", "now", is_flag=True, required=True, help="trigger the schedule once")
@pass_api
def reconcile(api: ApiClient, now: bool) -> None:
    """Run the reconcile schedule once and show what it repaired."""
    api.show(api.call("POST", "/api/admin/federation/reconcile"), [])


@federation.command("runs")
@click.option("--grant", "grant_id", default=None)
@click.option("--peer", "peer_id", default=None)
@pass_api
def runs(api: ApiClient, grant_id: str | None, peer_id: str | None) -> None:
    """Workflow runs of a grant or peer, with links into the Temporal UI."""
    params = {k: v for k, v in (("grant", grant_id), ("peer", peer_id)) if v}
    columns = ["workflowId", "workflowType", "status", "startTime", "url"]
    api.show(api.call("GET", "/api/admin/federation/runs", params=params), columns)
