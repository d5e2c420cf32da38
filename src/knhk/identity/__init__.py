"""Identity and access (SPEC §10): who is acting (:class:`Principal`; verified OIDC bearer JWTs, RFC 7519/8725,
or the local development issuer) and what they may do (one role → permission matrix, MFA for
operator/administrator mutations).

Shared by every face: the service authenticates each request with :func:`build_authenticator`'s
:class:`Authenticator` (401/503 on failure); the application layer (:mod:`knhk.app`) authorizes each operation
for the acting principal (403 on failure); ``knhk token mint`` mints local tokens. See
``docs/identity-and-access.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from knhk.config import Settings
from knhk.identity.local import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer, check_bind_allowed
from knhk.identity.oidc import (
    ALLOWED_ALGORITHMS,
    DEFAULT_GROUP_ROLES,
    AuthenticationFailure,
    Authenticator,
    BearerTokenError,
    IssuerConfig,
)
from knhk.identity.rbac import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    Principal,
    authorize,
    needs_mfa,
    permissions_of,
)
from knhk.ops.clock import SYSTEM_CLOCK, Clock

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


def build_authenticator(settings: Settings, *, http_client: httpx.Client | None = None, clock: Clock = SYSTEM_CLOCK,
                        on_failure: Callable[[AuthenticationFailure], None] | None = None) -> Authenticator:
    """The authenticator the service uses, configured from the settings (token times on ``clock``)."""
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
