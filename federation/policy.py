"""DESIGN §6, the redeem failure policy, as a table: what happens to the token,
the issued certificate and the HTTP answer for each kind of failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ClaimFate = Literal["unchanged", "release", "burn"]


@dataclass(frozen=True)
class FailureRule:
    claim: ClaimFate
    revoke_certificate: bool
    http_status: int

    @property
    def releases_token(self) -> bool:
        return self.claim == "release"

    @property
    def burns_token(self) -> bool:
        return self.claim == "burn"


REDEEM_FAILURE_POLICY: dict[str, FailureRule] = {
    "TokenNotFound": FailureRule("unchanged", False, 404),
    "TokenExpired": FailureRule("unchanged", False, 410),
    "TokenUsed": FailureRule("unchanged", False, 410),
    "InvalidCSR": FailureRule("unchanged", False, 400),
    "GrantNotPending": FailureRule("unchanged", False, 409),
    "PeerMismatch": FailureRule("unchanged", False, 409),
    # Released only while still within the TTL (release_claim checks that).
    "CAUnavailable": FailureRule("release", False, 503),
    "CARefused": FailureRule("release", False, 502),
    "CertificateRejected": FailureRule("burn", True, 502),
    "ActivationLost": FailureRule("burn", True, 409),
    # A fault we did not foresee (database gone, a bug): undo what we can, the peer retries.
    "Unavailable": FailureRule("release", True, 503),
}


# Not in the table: the database failing during activation. Activation retries
# until it succeeds (the token stays claimed, the certificate is kept); the API
# answers 503 past its wait and the same request attaches to the run later.


def rule_for(kind: str) -> FailureRule:
    return REDEEM_FAILURE_POLICY.get(kind, REDEEM_FAILURE_POLICY["Unavailable"])


def http_status_for(kind: str) -> int:
    return rule_for(kind).http_status
