"""The installation's authenticator, configured from the settings: the trusted issuers of ``KNHK_OIDC_ISSUERS``
(or else the local dev issuer alone) with the configured token and JWKS bounds.

The service builds one per process; the CLI builds one when a command runs with ``--token`` / ``KNHK_TOKEN``.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from knhk.config import Settings
from knhk.identity.local import LocalIssuer
from knhk.identity.oidc import AuthenticationFailure, Authenticator, IssuerConfig
from knhk.ops.clock import SYSTEM_CLOCK, Clock


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
