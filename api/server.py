"""One way to build the uvicorn server of a listener, used by every listener of the
gateway: read deadlines, a connection cap within the open-files budget, the ASGI
TLS extension, an access log without query strings, rate-limited noisy lines."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from api.connections import ConnectionSlots, GuardedH11Protocol, Listener
from api.openfiles import connection_budget, open_files_limit
from api.serverlogs import install_listener_log_filters
from api.tlsinfo import ListenerTLS, ServerTLS
from federation.settings import Settings

__all__ = ["ServerTLS", "build_server"]

log = logging.getLogger("mosaic.api.server")

# On shutdown, requests in flight get this long to finish; slow clients do not hold the process.
GRACEFUL_SHUTDOWN_SECONDS = 10

# Every server of the process draws on one open-files budget.
_PROCESS_SLOTS = ConnectionSlots(sys.maxsize)


def build_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    settings: Settings,
    tls: ServerTLS | None = None,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | None = None,
    access_log: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``host:port`` whose connections are guarded
    (see ``api.connections``); not started."""
    install_listener_log_filters()
    budget = connection_budget(open_files_limit())
    _PROCESS_SLOTS.limit = sys.maxsize if budget is None else budget
    cap = min(settings.mosaic_max_connections, _PROCESS_SLOTS.limit)
    listener = Listener(
        header_timeout=settings.mosaic_header_timeout_seconds,
        body_timeout=settings.mosaic_body_timeout_seconds,
        slots=(ConnectionSlots(cap), _PROCESS_SLOTS),
        tls=ListenerTLS.from_config(tls) if tls is not None else None,
        access_log=access_log,
    )

    class ListenerProtocol(GuardedH11Protocol):
        pass

    ListenerProtocol.listener = listener
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=ListenerProtocol,
        ws="none",
        log_level="info",
        log_config=None,
        # Always on: uvicorn's off switch unhooks the access logger for the whole process.
        access_log=True,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        # uvicorn answers 503 once connections or tasks reach this (>=): one above our cap,
        # so it never refuses a connection we admitted, and still bounds requests in flight.
        limit_concurrency=cap + 1,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    log.info(
        "listener %s:%d%s: at most %d connections (MOSAIC_MAX_CONNECTIONS %d, open files"
        " allow %s), headers within %gs, body within %gs",
        host,
        port,
        _describe_tls(tls),
        cap,
        settings.mosaic_max_connections,
        "any number" if budget is None else budget,
        listener.header_timeout,
        listener.body_timeout,
    )
    return _Server(config)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the command running it.

    uvicorn's own capture re-raises SIGTERM after its shutdown; with two servers in one
    process (the admin API and the federation listener) each would re-raise it into the
    other's shutdown. ``api.cli.gateway.run_until_stopped`` owns SIGTERM and Ctrl-C and
    stops every server of the process in order.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _describe_tls(tls: ServerTLS | None) -> str:
    if tls is None:
        return ""
    if tls.require_client_cert:
        return " (TLS, client certificate required)"
    return " (TLS, client certificate optional)" if tls.client_ca_pem else " (TLS)"
