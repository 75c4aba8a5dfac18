"""A server-side TLS upgrade that tells a refused client why.

asyncio's SSL protocol (Python 3.11) drops the connection on a failed handshake
without sending the alert OpenSSL wrote: a peer whose certificate B does not trust
sees a bare connection reset (TLS 1.3) or an unexpected EOF (TLS 1.2), which it cannot
tell from a network fault. Flushing the outgoing buffer before failing sends the alert
("unknown CA", "certificate required"), so the peer can report "TLS refused".

This leans on two private members of ``asyncio.sslproto.SSLProtocol``
(``_do_handshake``'s shape and ``_process_outgoing``); a test holds it to the
behaviour (tests/integration/test_federation_guard.py), so a Python upgrade that
changes them fails loudly instead of silently.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import Any


class _AlertingSSLProtocol(sslproto.SSLProtocol):
    def _do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()  # type: ignore[attr-defined]
        except sslproto.SSLAgainErrors:
            self._process_outgoing()  # type: ignore[attr-defined]
        except ssl.SSLError as exc:
            self._process_outgoing()  # type: ignore[attr-defined]  # the alert goes out first
            self._on_handshake_complete(exc)
        else:
            self._on_handshake_complete(None)


async def start_tls_server(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    *,
    handshake_timeout: float,
    shutdown_timeout: float,
) -> asyncio.Transport:
    """``loop.start_tls(..., server_side=True)``, with the alert of a refusal sent."""
    waiter = loop.create_future()
    ssl_protocol = _AlertingSSLProtocol(
        loop,
        protocol,
        context,
        waiter,
        server_side=True,
        # typeshed says int; asyncio takes any number of seconds.
        ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]
        ssl_shutdown_timeout=shutdown_timeout,
        call_connection_made=False,
    )
    # As asyncio does: paused until the SSL protocol has seen connection_made.
    transport.pause_reading()
    transport.set_protocol(ssl_protocol)
    made = loop.call_soon(ssl_protocol.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    app_transport: Any = ssl_protocol._app_transport  # noqa: SLF001
    return app_transport  # type: ignore[no-any-return]
