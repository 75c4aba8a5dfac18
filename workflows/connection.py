"""Connect to Temporal, waiting while it is down: a worker may start before its server."""

from __future__ import annotations

import asyncio
import logging
import re

from temporalio.client import Client
from temporalio.runtime import Runtime

log = logging.getLogger("mosaic.worker")

RETRY_SECONDS = 3.0
# The SDK's connect error is a Rust debug dump; the OS or resolver message inside is the news.
_QUOTED_CAUSE = re.compile(r'(?:message|error): "([^"]+)"')


async def connect_when_up(
    address: str,
    *,
    namespace: str,
    runtime: Runtime | None = None,
    setting: str = "TEMPORAL_ADDRESS",
    retry_seconds: float = RETRY_SECONDS,
) -> Client:
    """``Client.connect``, retried until it succeeds; one warning line per failed attempt.

    Cancelling (Ctrl-C, SIGTERM) stops the wait.
    """
    while True:
        try:
            return await Client.connect(address, namespace=namespace, runtime=runtime)
        except RuntimeError as exc:
            log.warning(
                "waiting for Temporal at %s (%s): %s; retrying in %gs",
                address,
                setting,
                connect_failure(exc),
                retry_seconds,
            )
        await asyncio.sleep(retry_seconds)


def connect_failure(exc: BaseException) -> str:
    """The reason a connect failed, in a few words (``connection refused``)."""
    text = str(exc)
    causes = _QUOTED_CAUSE.findall(text)
    reason = causes[-1] if causes else text.removeprefix("Failed client connect: ")
    return " ".join(reason.split())[:200].lower()
