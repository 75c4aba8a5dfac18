"""The certificate ledger and the CA's own view of revocations, for assertions.

The ledger is read raw from the database; the CA is asked itself: the built-in CA's
revocation list, or step-ca's answer to a second revocation ("already revoked").
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from federation.ca.base import CertificateAuthority
from federation.ca.builtin import BuiltinCA
from federation.ca.stepca import StepCA
from tests.support.dbsnap import fetch_all
from tests.support.faults import db_id

SETTLED = ("revoked", "active")


async def ledger_rows(engine: AsyncEngine, grant_id: str) -> list[dict[str, Any]]:
    """Every ledger row of a grant, oldest first."""
    return await fetch_all(
        engine,
        "SELECT serial, state, purpose, issued_by, revoke_after, revocation_reason, revoked_at,"
        " cert_pem FROM federation_certificates WHERE grant_id = :g ORDER BY created_at, serial",
        g=db_id(engine, grant_id),
    )


async def settled_ledger(
    engine: AsyncEngine, grant_id: str, *, within: float = 20.0
) -> list[dict[str, Any]]:
    """Wait until every row of the grant is revoked at the CA or is its pinned certificate.

    Revocations after a failed redeem run apart from the answer, so they land a moment
    later. Fails with the rows as they are when they do not settle in time.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        rows = await ledger_rows(engine, grant_id)
        unsettled = [r for r in rows if r["state"] not in SETTLED or _decided_but_active(r)]
        if not unsettled:
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"ledger of grant {grant_id} did not settle: {unsettled}")
        await asyncio.sleep(0.1)


def _decided_but_active(row: dict[str, Any]) -> bool:
    return row["state"] == "active" and row["revoke_after"] is not None


def _unwrap(ca: CertificateAuthority) -> CertificateAuthority:
    inner = getattr(ca, "inner", None)
    return _unwrap(inner) if inner is not None else ca


async def ca_says_revoked(ca: CertificateAuthority, serial: str) -> bool:
    """Whether the CA itself holds ``serial`` as revoked.

    step-ca 0.19 has no query for it, so it is asked to revoke the serial again and must
    answer "already revoked"; a serial it did not hold revoked is revoked by the probe,
    which is then reported as False (the assertion fails either way).
    """
    ca = _unwrap(ca)
    if isinstance(ca, BuiltinCA):
        return ca.is_revoked(serial)
    assert isinstance(ca, StepCA), f"no revocation probe for {type(ca).__name__}"
    decimal = str(int(serial, 16))
    ott = ca._token(audience=f"{ca.url}/1.0/revoke", subject=decimal, extra={})  # noqa: SLF001
    response = await ca._client.post(  # noqa: SLF001
        "/1.0/revoke",
        json={"serial": decimal, "ott": ott, "passive": True, "reasonCode": 0, "reason": "probe"},
    )
    return response.status_code >= 400 and "already" in response.text.lower()
