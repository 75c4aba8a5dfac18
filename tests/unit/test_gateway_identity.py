"""Names derived from a gateway's identity: its default task queue, its workers' identity."""

from __future__ import annotations

import os
import socket
import uuid

from federation.identity import task_queue_for
from federation.runs import reconcile_schedule_id
from workflows.identity import gateway_of_worker, worker_identity

GATEWAY = uuid.UUID("8b92d34a-dfb8-40cb-bb3c-f05cb149afe9")


def test_default_task_queue_is_mosaic_and_the_first_12_hex_of_the_gateway_id() -> None:
    assert task_queue_for(GATEWAY) == "mosaic-8b92d34adfb8"
    assert task_queue_for(GATEWAY, "") == "mosaic-8b92d34adfb8"


def test_an_explicit_task_queue_setting_wins() -> None:
    assert task_queue_for(GATEWAY, "mosaic-federation") == "mosaic-federation"


def test_reconcile_schedule_is_named_after_the_queue_and_the_legacy_queue_keeps_its_name() -> None:
    assert reconcile_schedule_id(task_queue_for(GATEWAY)) == (
        "reconcile-enrollments-mosaic-8b92d34adfb8"
    )
    assert reconcile_schedule_id("mosaic-federation") == "reconcile-enrollments"


def test_worker_identity_names_its_gateway_host_and_process() -> None:
    identity = worker_identity(GATEWAY)
    assert identity == f"mosaic-gw-{GATEWAY}@{socket.gethostname()}:{os.getpid()}"
    assert gateway_of_worker(identity) == GATEWAY


def test_an_identity_that_is_not_a_mosaic_workers_names_no_gateway() -> None:
    for identity in ("31639@vm", "", "mosaic-gw-not-a-uuid@vm:1", f"x-mosaic-gw-{GATEWAY}@vm:1"):
        assert gateway_of_worker(identity) is None, identity
