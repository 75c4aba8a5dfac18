"""Prometheus metrics of the API process (the worker exports the Temporal SDK's own)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

ENROLLMENTS = Counter(
    "mosaic_enrollments",
    "Enrollment redeem requests answered, by outcome and HTTP status",
    ["outcome", "status"],
    registry=REGISTRY,
)
REDEEM_SECONDS = Histogram(
    "mosaic_redeem_seconds",
    "Time from a redeem request in to its answer out",
    buckets=(0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def record_redeem(status: int, seconds: float) -> None:
    ENROLLMENTS.labels(outcome="allowed" if status == 200 else "denied", status=str(status)).inc()
    REDEEM_SECONDS.observe(seconds)
