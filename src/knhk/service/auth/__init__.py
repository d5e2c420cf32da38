"""Identity and access for the HTTP service (SPEC §10): who is calling (OIDC bearer JWTs, RFC 7519/8725) and
what they may do (one role → permission matrix, MFA for operator/administrator mutations).

The app calls :func:`build_authenticator` once at start-up, :meth:`Authenticator.authenticate` per request
(401/503 on failure), fills the principal's pseudonym from the audit subjects, and :func:`authorize` with the
route's permission (403 on failure). See ``docs/identity-and-access.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from knhk.config import Settings
from knhk.ops.clock import SYSTEM_CLOCK, Clock
from knhk.service.auth.local import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer, check_bind_allowed
from knhk.service.auth.oidc import (
    ALLOWED_ALGORITHMS,
    DEFAULT_GROUP_ROLES,
    AuthenticationFailure,
    Authenticator,
    BearerTokenError,
    IssuerConfig,
)
from knhk.service.auth.rbac import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    Principal,
    authorize,
    needs_mfa,
    permissions_of,
)

if TYPE_CHECKING:
    from knhk.runtime import Runtime

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_GROUP_ROLES",
    "LOCAL_AUDIENCE",
    "LOCAL_ISSUER",
    "PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "AuthenticationFailure",
    "Authenticator",
    "BearerTokenError",
    "IssuerConfig",
    "LocalIssuer",
    "Principal",
    "authorize",
    "build_authenticator",
    "check_bind_allowed",
    "issuer_configs",
    "needs_mfa",
    "permissions_of",
]


def issuer_configs(settings: Settings) -> list[IssuerConfig]:
    """The trusted issuers: those of ``KNHK_OIDC_ISSUERS``, or else the local dev issuer alone."""
    if settings.oidc_issuers:
        return [IssuerConfig.from_mapping(raw, sector_claim=settings.auth_sector_claim,
                                          mfa_amr=settings.auth_mfa_amr_values, mfa_acr=settings.auth_mfa_acr_values)
                for raw in settings.oidc_issuers]
    return [LocalIssuer.from_settings(settings).issuer_config(settings)]


def build_authenticator(settings: Settings, runtime: Runtime | None = None, *,
                        http_client: httpx.Client | None = None, clock: Clock | None = None,
                        on_failure: Callable[[AuthenticationFailure], None] | None = None) -> Authenticator:
    """The authenticator the service uses, configured from the settings (token times on the runtime's clock
    when a runtime is given)."""
    if clock is None:
        clock = runtime.clock if runtime is not None else SYSTEM_CLOCK
    return Authenticator(
        issuer_configs(settings),
        leeway_s=settings.oidc_leeway_s,
        max_token_age_s=settings.oidc_max_token_age_s,
        jwks_refetch_interval_s=settings.oidc_jwks_refetch_interval_s,
        jwks_max_age_s=settings.oidc_jwks_max_age_s,
        http_timeout_s=settings.oidc_http_timeout_s,
        token_cache_size=settings.oidc_token_cache_size,
        http_client=http_client,
        clock=clock,
        on_failure=on_failure,
        mfa_required_roles=settings.auth_mfa_required_roles,
    )
