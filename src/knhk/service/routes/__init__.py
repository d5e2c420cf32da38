"""API routes under ``/api/v1``, one module per concept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends

from knhk.app.access import Operation
from knhk.service.security import ROUTE_PERMISSIONS, require

PREFIX = "/api/v1"

_PROBLEM = {"application/problem+json": {"schema": {
    "type": "object", "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "instance": {"type": "string"}, "code": {"type": "string"}}}}}
_ERRORS = {400: "Malformed request", 401: "Missing or invalid bearer token", 403: "Forbidden",
           404: "Not found", 409: "Conflict (duplicate id with other content, stale base, running job)",
           413: "Body too large", 415: "Body is not JSON", 422: "Invalid request",
           429: "Rate limited (see Retry-After)", 503: "A dependency is unavailable (see Retry-After)"}
#: Every API route documents the problem responses it may give (RFC 9457).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": _PROBLEM} for code, text in _ERRORS.items()}


def declare(router: APIRouter, method: str, path: str, operation: Operation,
            **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a route performing ``operation``: the caller is authenticated and authorized for it before the
    body is read (the operation's permission is recorded for the RBAC table test)."""
    if operation.permission is None:
        raise ValueError(f"{operation.name} is for local operators only and has no API route")
    ROUTE_PERMISSIONS[(method, PREFIX + path)] = (operation.permission, operation.mutating)
    responses = {**PROBLEM_RESPONSES, **kwargs.pop("responses", {})}
    dependencies = [Depends(require(operation)), *kwargs.pop("dependencies", [])]
    return router.api_route(path, methods=[method], responses=responses, dependencies=dependencies, **kwargs)
