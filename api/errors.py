"""One place that turns errors into one-line JSON problems: ``{"detail": "..."}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from federation.errors import FederationError

log = logging.getLogger("mosaic.api")


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
