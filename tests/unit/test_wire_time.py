"""One timestamp format across API answers: what pydantic writes for an aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.schemas import PeerLifecycle, UserOut
from federation.db.models import wire_time

# What the database gives back: aware UTC (federation.db.models.UTCDateTime).
MOMENTS = [
    datetime(2026, 12, 3, 8, 4, 53, 123456, tzinfo=UTC),
    datetime(2026, 12, 3, 8, 4, 53, tzinfo=UTC),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_hand_written_answers_write_times_as_the_schemas_do(moment: datetime) -> None:
    user = UserOut.model_validate(
        {
            "id": "0b7d6f3e-3c1a-4f7e-9a55-6b0f2d1c9e01",
            "name": "Ann",
            "email": "a@b.test",
            "createdAt": moment,
        }
    )
    assert user.model_dump(mode="json", by_alias=True)["createdAt"] == wire_time(moment)
    assert wire_time(moment).endswith("Z")


def test_a_time_in_another_zone_is_written_in_utc() -> None:
    moment = datetime(2026, 12, 3, 9, 4, 53, 5, tzinfo=timezone(timedelta(hours=1)))
    assert wire_time(moment) == "2026-12-03T08:04:53.000005Z"


def test_the_lifecycle_status_of_a_peer_is_written_like_every_other_time() -> None:
    """The workflow's query says isoformat() (+00:00); the API answer says Z."""
    status = PeerLifecycle(
        id="peer-cert-x",
        state="active",
        not_after=MOMENTS[0].isoformat(),  # type: ignore[arg-type]
        next_renewal_at=MOMENTS[1].isoformat(),  # type: ignore[arg-type]
    )
    wire = status.model_dump(mode="json", by_alias=True)
    assert wire["notAfter"] == wire_time(MOMENTS[0])
    assert wire["nextRenewalAt"] == wire_time(MOMENTS[1])
