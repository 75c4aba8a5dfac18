"""Activities on the certificate ledger (gateway B) that every workflow shares.

The CA revocation only revokes what the ledger already decided to revoke: the decision
is taken in a database transaction by whoever owns it (a failed redeem, a grant revoke,
a renewal's overlap, the reconcile sweep); this step carries it to the CA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import domain_errors
from federation import ledger
from federation.ca.base import CertificateAuthority
from federation.errors import CARefused

log = logging.getLogger("mosaic.activities.certificates")


@dataclass(frozen=True)
class CARevocation:
    serial: str
    reason: str


@dataclass(frozen=True)
class CARevoked:
    serial: str
    # False when the CA refused (a 4xx): the row stays decided and reconcile retries it.
    confirmed: bool
    refusal: str | None = None


def run_ref() -> str:
    """The run an activity works for, as the ledger records it (``issued_by``)."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}"


class CertificateActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ca: CertificateAuthority
    ) -> None:
        self._sessions = sessions
        self._ca = ca

    @activity.defn(name="certificates.revoke_at_ca")
    @domain_errors
    async def revoke_at_ca(self, arg: CARevocation) -> CARevoked:
        """Revoke one decided serial at the CA, then mark it ``revoked`` in the ledger.

        An unreachable CA raises (retried); a refusing CA is reported, not raised, so a
        caller revoking several certificates goes on with the others.
        """
        try:
            await ledger.revoke_at_ca(self._sessions, self._ca, arg.serial, arg.reason)
        except CARefused as refused:
            log.warning(
                "CA refused to revoke %s: %s (%s); reconcile will retry",
                arg.serial,
                refused.message,
                refused.cause,
            )
            return CARevoked(arg.serial, False, refused.message)
        log.info("certificate %s revoked at the CA: %s", arg.serial, arg.reason)
        return CARevoked(arg.serial, True)

    def all(self) -> list[Callable[..., Any]]:
        return [self.revoke_at_ca]
