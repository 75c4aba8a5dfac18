"""Request protection for the whole app: a body size cap, admin authentication on
``/api/admin/*`` before anything reads the body, and a per-client rate limit on the
enrollment routes (the only routes an unauthenticated caller reaches with work behind
them: a database read, a Temporal workflow).

All are pure ASGI middleware, so a streamed body is counted chunk by chunk and
a refused request never reaches the app or the database.

The rate limit keys on the transport peer address (``scope["client"]``, what
``request.client.host`` reads). Behind a reverse proxy every request comes from
the proxy, so all clients share one bucket: run uvicorn with
``--proxy-headers --forwarded-allow-ips <proxy>`` (it then rewrites the client
address from ``X-Forwarded-For`` for that proxy only) or rate-limit at the
proxy. ``X-Forwarded-For`` is never read here: any client can forge it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import admin_refusal
from federation.settings import Settings
from federation.tokens import hash_token, is_well_formed, log_id

log = logging.getLogger("mosaic.api.protection")

ENROLLMENT_PREFIX = "/api/federation/enrollment"
ADMIN_PREFIX = "/api/admin"
RATE_LIMITED = "too many enrollment requests; retry later"
MAX_TRACKED_CLIENTS = 10_000


async def _send_problem(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """413 for a body over ``max_bytes``: at once when Content-Length says so,
    otherwise as soon as the streamed chunks pass the cap."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"request body is larger than {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_problem(send, 413, self.detail)
            return

        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            # Once the cap is hit, whatever the app answers (FastAPI turns a failed
            # body read into a 400) is replaced by our 413.
            if too_large and not response_started:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Ours, or whatever a layer in between made of it; anything else is the app's.
            if not too_large:
                raise
        if too_large and not response_started:
            await _send_problem(send, 413, self.detail)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects it; the streamed count still applies
    return None


class AdminAuthentication:
    """401/403 on ``/api/admin/*`` exactly as ``AdminDep`` answers, before the route
    parses anything: an unauthenticated caller learns nothing from a body's 422."""

    def __init__(self, app: ASGIApp, *, admin_token: SecretStr) -> None:
        self.app = app
        self.admin_token = admin_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under(ADMIN_PREFIX, scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization", "")
        refusal = admin_refusal(authorization, self.admin_token.get_secret_value())
        if refusal is None:
            await self.app(scope, receive, send)
            return
        headers = [(k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items()]
        await _send_problem(send, refusal.status_code, str(refusal.detail), headers)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    limited: bool = False


class EnrollmentRateLimit:
    """Token bucket per client address on the enrollment routes: ``burst`` requests
    at once, refilled at ``rate_per_minute``; over it, 429 with Retry-After.

    Buckets live in memory (per process) in an LRU of ``max_clients`` entries, so
    a flood of source addresses cannot grow memory; an evicted client starts over
    with a full bucket.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate_per_minute: int,
        burst: int,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under(ENROLLMENT_PREFIX, scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        retry_after = self._take(address)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        # No `denied` audit row here: it would let anyone fill the audit table at
        # line rate. One log line per limited episode instead (8 chars of hash).
        bucket = self.buckets[address]
        if not bucket.limited:
            bucket.limited = True
            log.warning(
                "enrollment rate limit hit by %s (token %s); retry in %ss",
                address,
                _token_log_id(scope["path"]),
                retry_after,
            )
        await _send_problem(
            send, 429, RATE_LIMITED, headers=[(b"retry-after", str(retry_after).encode())]
        )

    def _take(self, address: str) -> int | None:
        """Take one token for ``address``: None when allowed, else seconds to wait."""
        now = self.clock()
        bucket = self.buckets.get(address)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated=now)
            self.buckets[address] = bucket
            if len(self.buckets) > self.max_clients:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(address)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate_per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.limited = False
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_second))


def _under(prefix: str, path: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _token_log_id(path: str) -> str:
    token = path.removeprefix(ENROLLMENT_PREFIX).strip("/")
    return log_id(hash_token(token)) if is_well_formed(token) else "malformed"


def install_protection(app: FastAPI, settings: Settings) -> None:
    """Add the middlewares. In order of running: the rate limit (a refused request costs
    nothing), the body cap (a declared oversize body is refused unread), then admin
    authentication (before any route reads a body)."""
    app.add_middleware(AdminAuthentication, admin_token=settings.mosaic_admin_token)
    app.add_middleware(BodySizeLimit, max_bytes=settings.mosaic_max_body_bytes)
    app.add_middleware(
        EnrollmentRateLimit,
        rate_per_minute=settings.mosaic_enroll_rate_per_minute,
        burst=settings.mosaic_enroll_burst,
    )
