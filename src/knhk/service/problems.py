"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns is a problem object ``{type, title, status, detail, instance, code}`` plus any
extension members the error carries (e.g. ``index`` of the failing batch item). ``KnhkError`` subclasses map
to their status; request-validation failures are 422 (400 when the body is not JSON at all); 401 carries
``WWW-Authenticate: Bearer``; 429 and 503 carry ``Retry-After``. Unexpected exceptions are logged with a
reference and answered 500 without internals.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from knhk.errors import (
    AuthenticationError,
    DependencyUnavailableError,
    KnhkError,
    RateLimitedError,
)

log = logging.getLogger("knhk.service")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://knhk.dev/problems/"

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def problem(status: int, detail: str, *, code: str | None = None, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + (code or str(status)),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if code is not None:
        body["code"] = code
    for key, value in extra.items():
        if key not in body and isinstance(value, str | int | bool | float | list | dict | type(None)):
            body[key] = value
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def from_error(exc: KnhkError, instance: str | None = None) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = str(getattr(exc, "www_authenticate", None) or 'Bearer realm="knhk"')
    if isinstance(exc, RateLimitedError | DependencyUnavailableError):
        headers["Retry-After"] = str(exc.retry_after)
    status = exc.http_status if exc.http_status != 500 or exc.code == "integrity" else 500
    details = {k: v for k, v in exc.details.items() if k != "www_authenticate"}
    return problem(status, exc.message, code=exc.code, instance=instance, headers=headers, **details)


def _validation_detail(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors = exc.errors()
    items = []
    status = 422
    for err in errors[:20]:
        loc = [str(p) for p in err.get("loc", ())]
        if err.get("type") == "json_invalid":
            status = 400
        items.append({"location": ".".join(loc), "message": str(err.get("msg", "invalid"))})
    first = items[0] if items else {"location": "body", "message": "invalid request"}
    what = "the request body is not valid JSON" if status == 400 else f"{first['location']}: {first['message']}"
    return status, what, items


def install(app: FastAPI) -> None:
    """Register the exception handlers that turn every error into a problem."""

    @app.exception_handler(KnhkError)
    async def knhk_error(request: Request, exc: KnhkError) -> Response:
        return from_error(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        status, detail, items = _validation_detail(exc)
        return problem(status, detail, code="malformed" if status == 400 else "invalid", instance=request.url.path,
                       errors=items)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        return problem(exc.status_code, str(exc.detail), instance=request.url.path, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        ref = uuid.uuid4().hex[:12]
        log.exception("unexpected error %s on %s %s", ref, request.method, request.url.path)
        return problem(500, f"an unexpected error occurred (reference {ref})", code="internal",
                       instance=request.url.path)
