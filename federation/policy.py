"""DESIGN §6, the redeem failure policy, as a table: what happens to the claimed token for
each kind of failure. The HTTP status comes from the error kinds themselves
(``federation.errors.status_for_kind``): one table, not two.

Certificates are not in this table because the answer no longer depends on the kind:
on every failure, whatever this run had the CA sign, or asked it to sign (a reply may
have been lost), is withdrawn in the certificate ledger and revoked at the CA. The
grant's usable certificate is never touched by a failed run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from federation.errors import status_for_kind

ClaimFate = Literal["unchanged", "release", "burn"]


@dataclass(frozen=True)
class FailureRule:
    claim: ClaimFate

    @property
    def releases_token(self) -> bool:
        return self.claim == "release"

    @property
    def burns_token(self) -> bool:
        return self.claim == "burn"


REDEEM_FAILURE_POLICY: dict[str, FailureRule] = {
    "TokenNotFound": FailureRule("unchanged"),
    "TokenExpired": FailureRule("unchanged"),
    "TokenUsed": FailureRule("unchanged"),
    "InvalidCSR": FailureRule("unchanged"),
    "GrantNotPending": FailureRule("unchanged"),
    "PeerMismatch": FailureRule("unchanged"),
    "EnrollmentInProgress": FailureRule("unchanged"),
    # Released only while still within the TTL (release_claim checks that).
    "CAUnavailable": FailureRule("release"),
    "CARefused": FailureRule("release"),
    "CertificateRejected": FailureRule("burn"),
    "ActivationLost": FailureRule("burn"),
    # A fault we did not foresee (a database timeout, a bug): undo what we can, the peer retries.
    "Unavailable": FailureRule("release"),
}


# Not in the table: the database failing during activation. Activation retries
# until it succeeds (the token stays claimed, the certificate is kept); the API
# answers 503 past its wait and the same request attaches to the run later.


def rule_for(kind: str) -> FailureRule:
    return REDEEM_FAILURE_POLICY.get(kind, REDEEM_FAILURE_POLICY["Unavailable"])


def http_status_for(kind: str) -> int:
    return status_for_kind(kind)
