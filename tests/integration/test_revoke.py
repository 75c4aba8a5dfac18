"""Grant revocation through the RevokeGrant workflow, on both lanes."""

from __future__ import annotations

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from federation.ca.base import CertificateAuthority, IssuedCertificate, IssueRequest
from federation.ca.builtin import BuiltinCA
from federation.runs import revoke_workflow_id
from federation.settings import Settings
from tests.support.factories import make_grant, make_token
from tests.support.lanes import HookedCA, lane_with_ca
from tests.support.pki import make_csr

pytestmark = pytest.mark.usefixtures("worker")


async def _noop(_: IssueRequest, __: IssuedCertificate) -> None:
    return None


async def test_revoking_an_active_grant_revokes_its_certificate_and_peer(
    settings: Settings, temporal_env: WorkflowEnvironment, ca: CertificateAuthority
) -> None:
    hooked = HookedCA(ca, _noop)
    async with lane_with_ca(settings, temporal_env, hooked) as client:
        grant = await make_grant(client)
        token = (await make_token(client, grant["id"]))["token"]
        csr_pem, _ = make_csr(grant["_peer"]["commonName"])
        enrolled = await client.post(
            f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem}
        )
        assert enrolled.status_code == 200
        serial = enrolled.json()["certSerial"]

        revoked = await client.patch(
            f"/api/admin/federation/grants/{grant['id']}/revoke", json={"reason": "contract ended"}
        )
        assert revoked.status_code == 200, revoked.text
        body = revoked.json()
        assert body["status"] == "revoked" and body["reason"] == "contract ended"
        assert hooked.revoked == [serial]
        if isinstance(ca, BuiltinCA):
            assert ca.is_revoked(serial)
        peer = (await client.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
        assert peer["state"] == "revoked"
        audit = (
            await client.get("/api/admin/federation/audit", params={"grant": grant["id"]})
        ).json()
        revokes = [a for a in audit if a["verb"] == "grant.revoke"]
        assert len(revokes) == 1 and revokes[0]["reason"] == "contract ended"
        assert revokes[0]["certSerial"] == serial

        again = await client.patch(f"/api/admin/federation/grants/{grant['id']}/revoke", json={})
        assert again.status_code == 409
        described = await temporal_env.client.get_workflow_handle(
            revoke_workflow_id(grant["id"])
        ).describe()
        assert described.search_attributes.get("GrantId") == [grant["id"]]


async def test_revoking_a_pending_grant_needs_no_ca_and_its_token_then_gets_409(
    client: httpx.AsyncClient,
) -> None:
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    revoked = await client.patch(f"/api/admin/federation/grants/{grant['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert response.status_code == 409
