"""API routes under ``/api/v1``, one module per concept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from knhk.service.security import ROUTE_PERMISSIONS

PREFIX = "/api/v1"


def declare(router: APIRouter, method: str, path: str, permission: str, *, mutating: bool = False,
            **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a route and record the one permission it requires (for the RBAC table test)."""
    ROUTE_PERMISSIONS[(method, PREFIX + path)] = (permission, mutating)
    return router.api_route(path, methods=[method], **kwargs)
