"""The HTTP/1.1 protocol of every listener: uvicorn's h11 protocol with read
deadlines, a cap on open connections and the ASGI TLS extension.

A hostile client can hold a socket without ever finishing a request: partial
headers sent a byte at a time (slowloris), a chunked body that never ends. So a
connection always has at most one read deadline: the request headers must be
complete within ``header_timeout`` of the connection opening (TLS handshake
included) or, on a kept-alive connection, of the next request's first byte; the
body within ``body_timeout`` of the headers. While the app answers, and while a
kept-alive connection idles (uvicorn's keep-alive timeout), no deadline runs.

The cap counts connections from accept, per server and for the whole process
(the open-files budget). When a server is full, the connection that has waited
longest for a request (idle, or still sending headers) is dropped for the
newcomer: an attacker must open as many connections as the cap within the time a
real client takes to send its headers to crowd it out. Only when every
connection is busy in a request is the newcomer answered 503 and closed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import h11
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.tls_alerts import start_tls_server
from api.tlsinfo import ListenerTLS, tls_extension

log = logging.getLogger("mosaic.api.connections")

# Sent before the request is read, so no Date, no request id: the app never runs.
SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 20\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"server is too busy\r\n"
)


class Phase(enum.Enum):
    HEADERS = "request headers"  # TLS handshake, request line and headers
    BODY = "request body"
    APP = "app"  # the request is read; the app answers
    IDLE = "idle"  # kept alive between requests


class ConnectionSlots:
    """A cap on open connections, and the order in which waiting ones give way."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        # Connections waiting for a request (idle or sending headers), longest first.
        self._waiting: dict[GuardedH11Protocol, None] = {}

    def make_room(self) -> bool:
        """Whether one more connection fits, dropping the longest-waiting one if full."""
        if self.open < self.limit:
            return True
        victim = next(iter(self._waiting), None)
        if victim is None:
            return False
        victim.drop_for_newcomer()
        return self.open < self.limit

    def add(self, connection: GuardedH11Protocol) -> None:
        self.open += 1
        self._waiting[connection] = None

    def remove(self, connection: GuardedH11Protocol) -> None:
        self.open -= 1
        self._waiting.pop(connection, None)

    def waiting(self, connection: GuardedH11Protocol) -> None:
        self._waiting.pop(connection, None)
        self._waiting[connection] = None

    def busy(self, connection: GuardedH11Protocol) -> None:
        self._waiting.pop(connection, None)


@dataclass(frozen=True)
class Listener:
    """What one server's connections share."""

    header_timeout: float
    body_timeout: float
    # This server's cap, then the process's (the open-files budget).
    slots: tuple[ConnectionSlots, ...]
    tls: ListenerTLS | None
    access_log: bool


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, guarded; ``build_server`` subclasses it per server to
    set ``listener``."""

    listener: ClassVar[Listener]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's access_log switch is process-wide (it unhooks the logger): ours is per server.
        self.access_log = self.access_log and self.listener.access_log
        self._phase = Phase.HEADERS
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted = False
        self._ready = False  # uvicorn's connection_made has run
        self._tcp: asyncio.Transport | None = None  # the TCP transport while TLS handshakes
        self._early = bytearray()  # data decrypted before the handshake task resumed

    # ---------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not all(slots.make_room() for slots in self.listener.slots):
            self._refuse(transport)
            return
        self._admitted = True
        for slots in self.listener.slots:
            slots.add(self)
        self._enter(Phase.HEADERS, self.listener.header_timeout)
        if self.listener.tls is None:
            self._ready = True
            super().connection_made(transport)
            return
        # TLS is started here rather than by the server so that the handshake counts
        # against the cap and the header deadline.
        self._tcp = transport
        transport.pause_reading()
        task = self.loop.create_task(self._handshake(transport, self.listener.tls))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self._ready:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._ready:
            self._early += data
            return
        if self._phase is Phase.IDLE and data:
            self._enter(Phase.HEADERS, self.listener.header_timeout)
        super().data_received(data)

    # ---------------------------------------------------------------- uvicorn hooks

    def handle_events(self) -> None:
        super().handle_events()
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    # ---------------------------------------------------------------- the cap

    def drop_for_newcomer(self) -> None:
        log.warning(
            "evicted a connection waiting for a request (%s) to admit a new one: server full",
            self._phase.value,
        )
        self._release()
        self._abort()

    def _refuse(self, transport: asyncio.Transport) -> None:
        log.warning("refused a connection with 503: server full, every connection busy")
        if self.listener.tls is None:
            transport.write(SERVICE_UNAVAILABLE)
        transport.close()

    def _release(self) -> None:
        self._cancel_deadline()
        if self._admitted:
            self._admitted = False
            for slots in self.listener.slots:
                slots.remove(self)

    def _abort(self) -> None:
        transport = self.transport if self._ready else self._tcp
        if transport is not None:
            transport.abort()

    # ---------------------------------------------------------------- deadlines

    def _follow_request(self) -> None:
        """Move the phase (and its deadline) along with h11's view of the client."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._phase in (Phase.BODY, Phase.APP):
                # The cycle is over; bytes already buffered are the next request's.
                buffered, _ = self.conn.trailing_data
                if buffered:
                    self._enter(Phase.HEADERS, self.listener.header_timeout)
                else:
                    self._enter(Phase.IDLE, None)
        elif state is h11.SEND_BODY:
            if self._phase is not Phase.BODY:
                self._enter(Phase.BODY, self.listener.body_timeout)
        elif self._phase is not Phase.APP:
            self._enter(Phase.APP, None)

    def _enter(self, phase: Phase, timeout: float | None) -> None:
        was_waiting = self._phase in (Phase.HEADERS, Phase.IDLE)
        self._phase = phase
        self._cancel_deadline()
        if timeout is not None:
            self._deadline = self.loop.call_later(timeout, self._deadline_passed, phase)
        if not self._admitted:
            return
        if phase in (Phase.BODY, Phase.APP):
            for slots in self.listener.slots:
                slots.busy(self)
        elif not was_waiting:
            for slots in self.listener.slots:
                slots.waiting(self)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self, phase: Phase) -> None:
        self._deadline = None
        timeout = (
            self.listener.header_timeout if phase is Phase.HEADERS else self.listener.body_timeout
        )
        log.warning("dropped a slow connection: %s not complete within %gs", phase.value, timeout)
        self._release()
        self._abort()

    # ---------------------------------------------------------------- TLS

    async def _handshake(self, tcp: asyncio.Transport, tls: ListenerTLS) -> None:
        if tcp.is_closing():  # dropped before the handshake began
            return
        transport: asyncio.Transport | None = None
        try:
            transport = await start_tls_server(
                self.loop,
                tcp,
                self,
                tls.context,
                handshake_timeout=self.listener.header_timeout,
                # A peer that never answers close_notify must not hold the socket long.
                shutdown_timeout=self.listener.header_timeout,
            )
        except OSError:  # ssl.SSLError and timeouts too; asyncio has closed the socket
            pass
        finally:
            if transport is None:  # failed, timed out, dropped or cancelled while handshaking
                self._release()
        if transport is None:
            return
        self._tcp = None
        self._ready = True
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        self.app = _with_tls_extension(self.app, tls_extension(ssl_object, tls))
        if self._early:
            early, self._early = bytes(self._early), bytearray()
            self.data_received(early)


def _with_tls_extension(app: ASGI3Application, extension: dict[str, Any]) -> ASGI3Application:
    async def app_with_tls(
        scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        extensions = cast(MutableMapping[str, Any], scope).setdefault("extensions", {})
        extensions["tls"] = extension
        await app(scope, receive, send)

    return app_with_tls
