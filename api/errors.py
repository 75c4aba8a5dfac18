"""One place that turns errors into one-line JSON problems: ``{"detail": "..."}``."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from federation.db.session import unreachable_reason
from federation.errors import FederationError

log = logging.getLogger("mosaic.api")
# Where an OSError must have been raised to mean "the database is unreachable".
_DATABASE_DRIVERS = ("asyncpg", "aiosqlite", "sqlite3", "sqlalchemy")


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def validation_reason(exc: RequestValidationError) -> str:
    """The first problem, naming the field, on one line."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON"
    message = str(first.get("msg", "invalid value")).replace("\n", " ")
    message = message.removeprefix("Value error, ")
    reason = f"{_field_path(tuple(first.get('loc', ())))}: {message}"
    return reason[:300]


def database_unreachable(exc: BaseException) -> str | None:
    """Why the database could not be used, when that is what ``exc`` means; else None."""
    reason = unreachable_reason(exc)
    if reason is None or not isinstance(exc, OSError):
        return reason
    modules = (
        frame.f_globals.get("__name__", "") for frame, _ in traceback.walk_tb(exc.__traceback__)
    )
    return reason if any(name.startswith(_DATABASE_DRIVERS) for name in modules) else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FederationError)
    async def _federation(request: Request, exc: FederationError) -> JSONResponse:
        if exc.cause:
            log.info("%s %s -> %s (%s)", request.method, request.url.path, exc.kind, exc.cause)
        headers = {"Retry-After": "5"} if exc.retryable else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_reason(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DBAPIError)
    @app.exception_handler(OSError)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        reason = database_unreachable(exc)
        if reason is None:
            raise exc  # not the database's reachability: a bug, left to the 500 handler
        log.warning("%s %s -> database unavailable (%s)", request.method, request.url.path, reason)
        return JSONResponse(
            {"detail": "database unavailable"}, status_code=503, headers={"Retry-After": "5"}
        )
