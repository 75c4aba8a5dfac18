"""Listeners built by ``api.server.build_server``, served for real, with a tiny app
that records what reached it, and raw sockets for clients that misbehave."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send


@dataclass
class RecordingApp:
    """Answers every request with JSON naming its path, body size and TLS extension.

    ``/hold`` waits until ``release`` is set; every request that reached the app and every
    disconnect the app saw are recorded.
    """

    requests: list[str] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_requests(self, count: int) -> None:
        while len(self.requests) < count:
            await self._arrived.wait()
            self._arrived.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.requests.append(scope["path"])
        self._arrived.set()
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects.append(scope["path"])
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if scope["path"] == "/hold":
            await self.release.wait()
        tls = scope.get("extensions", {}).get("tls")
        body = json.dumps(
            {"path": scope["path"], "scheme": scope["scheme"], "size": size, "tls": tls}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serving(server: uvicorn.Server) -> AsyncIterator[None]:
    """Serve until the block ends."""
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(250):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        else:
            raise RuntimeError("server did not start")
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any] | bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, JSON body or raw bytes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    if headers.get("content-type") == "application/json":
        return status, dict(json.loads(body))
    return status, body


async def closed_at(reader: asyncio.StreamReader, *, within: float) -> float:
    """The loop time at which the server closed (EOF or reset); TimeoutError after ``within``."""
    async with asyncio.timeout(within):
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
    return asyncio.get_running_loop().time()


# A deadline fires on the event loop: allow for a busy, shared machine.
DEADLINE_SLACK = 0.75


async def assert_cut_off(reader: asyncio.StreamReader, *, since: float, after: float) -> None:
    """The server closes the connection ``after`` seconds from ``since`` (loop time)."""
    closed = await closed_at(reader, within=after + DEADLINE_SLACK + 2)
    took = closed - since
    assert after - 0.05 <= took <= after + DEADLINE_SLACK, f"closed after {took:.2f}s, not {after}s"


async def still_open(reader: asyncio.StreamReader, *, for_seconds: float = 0.2) -> bool:
    """True if nothing (not even EOF) arrives for ``for_seconds``."""
    try:
        async with asyncio.timeout(for_seconds):
            await reader.read(1)
    except TimeoutError:
        return True
    except ConnectionError:
        return False
    return False
