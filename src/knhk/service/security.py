"""Route protection at the HTTP edge: each route names the one operation of the application it performs
(:mod:`knhk.app.access`), which carries its permission. Before the body is read the caller is authenticated
(401, audited), rate-limited per principal (429) and authorized by the application for that operation (403,
audited); the principal, with its pseudonym, is what the route hands to the operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from knhk.app.access import Operation
from knhk.app.application import Application
from knhk.app.auth_audit import failure_reason
from knhk.errors import AuthenticationError
from knhk.identity.rbac import Principal
from knhk.service import metrics
from knhk.service.state import ServiceState

#: (method, path template) → (permission, mutating): filled as routes are declared; tests read it.
ROUTE_PERMISSIONS: dict[tuple[str, str], tuple[str, bool]] = {}


def state_of(request: Request) -> ServiceState:
    st: ServiceState = request.app.state.knhk
    return st


def application_of(request: Request) -> Application:
    return state_of(request).app


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def require(operation: Operation) -> Callable[[Request], None]:
    """A FastAPI dependency: authenticate, rate-limit and authorize ``operation`` (MFA where the matrix says)."""

    def dependency(request: Request) -> None:
        st = state_of(request)
        resource = f"{request.method} {request.url.path}"
        try:
            principal = st.auth.authenticate(request.headers.get("authorization"))
        except AuthenticationError as exc:
            reason = failure_reason(exc)
            metrics.AUTH_FAILURES.labels(reason).inc()  # every failure counted; audited per client and minute
            st.app.record_authentication_failure(f"unauthenticated@{_client(request)}", resource, exc.message,
                                                 reason)
            raise
        st.limiter.check(principal.identity)
        st.app.authorize(principal, operation, resource=resource)
        request.state.principal = st.app.pseudonymised(principal)

    dependency.__name__ = f"require_{operation.name.replace('.', '_')}"
    return dependency


def _acting(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


#: The principal a request acts as (established by the route's :func:`require`).
Actor = Annotated[Principal, Depends(_acting)]
