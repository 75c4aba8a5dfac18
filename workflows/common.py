"""What every Mosaic workflow shares: the search attributes ops filter by, and the
retry policies of database steps."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy, SearchAttributeKey

GRANT_ID = SearchAttributeKey.for_keyword("GrantId")
PEER_ID = SearchAttributeKey.for_keyword("PeerId")
OUTCOME = SearchAttributeKey.for_keyword("EnrollmentOutcome")

# A short database step: retried quickly a few times, then the failure is real.
# (Domain errors are raised non-retryable by the activities and never retried.)
SHORT_STEP = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=5,
)
# A step that must land eventually (activation, compensations): retry until the database is back.
UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)
