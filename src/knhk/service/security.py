"""Route protection: every route declares exactly one permission (the RBAC matrix of
:mod:`knhk.service.auth.rbac` decides who holds it), authentication failures and authorization denials are
audited, rate limits apply per principal, and the principal is pseudonymised before anything is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from knhk.errors import AuthenticationError, ForbiddenError
from knhk.service.auth.rbac import Principal
from knhk.service.state import ServiceState

#: (method, path template) → (permission, mutating): filled as routes are declared; tests read it.
ROUTE_PERMISSIONS: dict[tuple[str, str], tuple[str, bool]] = {}


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of a request and its pseudonym."""

    principal: Principal
    pseudonym: str

    @property
    def identity(self) -> str:
        return self.principal.identity

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted(self.principal.roles))

    @property
    def sector(self) -> str | None:
        return self.principal.sector


def state_of(request: Request) -> ServiceState:
    st: ServiceState = request.app.state.knhk
    return st


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def require(permission: str, *, mutating: bool = False) -> Callable[[Request], Caller]:
    """A FastAPI dependency: authenticate, authorise ``permission`` (MFA where mutating and privileged)."""

    def dependency(request: Request) -> Caller:
        st = state_of(request)
        resource = f"{request.method} {request.url.path}"
        try:
            principal = st.auth.authenticate(request.headers.get("authorization"))
        except AuthenticationError as exc:
            st.auth_audit.failed(_client(request), resource, exc)  # counted; audited per client and minute
            raise
        st.limiter.check(principal.identity)
        try:
            st.auth.authorize(principal, permission, mutating=mutating)
        except ForbiddenError as exc:
            st.runtime.audit.record(principal.identity, "authz.denied", resource, "denied",
                                    reason=exc.message[:1000], metadata={"permission": permission})
            raise
        caller = Caller(principal, st.runtime.subjects.pseudonym(principal.identity))
        request.state.caller = caller
        return caller

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency
