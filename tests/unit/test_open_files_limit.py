from __future__ import annotations

import logging
import resource

import pytest

from api.openfiles import FD_RESERVE, connection_budget, raise_open_files_limit


def test_connections_get_the_limit_minus_the_reserve() -> None:
    assert connection_budget(20_000) == 20_000 - FD_RESERVE
    assert connection_budget(1024) == 1024 - FD_RESERVE


def test_a_small_limit_still_leaves_half_for_connections() -> None:
    assert connection_budget(FD_RESERVE) == FD_RESERVE // 2
    assert connection_budget(64) == 32
    assert connection_budget(1) == 1


def test_no_limit_means_no_budget() -> None:
    assert connection_budget(None) is None


def test_the_soft_limit_is_raised_to_the_hard_limit_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.fail("this test needs a finite hard RLIMIT_NOFILE (Linux has one)")
    lowered = min(soft, hard, 512)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        with caplog.at_level(logging.INFO, logger="mosaic.api.openfiles"):
            now = raise_open_files_limit()
        assert now == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert caplog.messages == [f"open files limit {hard} (was {lowered}, hard limit {hard})"]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
