"""Identity and access (SPEC §10): who is acting (:class:`Principal`; verified OIDC bearer JWTs, RFC 7519/8725,
or the local development issuer) and what they may do (one role → permission matrix, MFA for
operator/administrator mutations).

- :mod:`.rbac` — :class:`Principal`, the matrix and the one check (re-exported here: it imports no third-party
  library, so a command that only names its actor stays cheap to start);
- :mod:`.oidc` — the bearer-token verifier (:class:`~knhk.identity.oidc.Authenticator`, issuers, JWKS);
- :mod:`.local` — the local development issuer (:class:`~knhk.identity.local.LocalIssuer`) and the bind rule;
- :mod:`.authenticator` — :func:`~knhk.identity.authenticator.build_authenticator`, the service's
  authenticator configured from the settings.

Shared by every face: the service authenticates each request (401/503 on failure); the application layer
(:mod:`knhk.app`) authorizes each operation for the acting principal (403 on failure); ``knhk token mint`` mints
local tokens. See ``docs/identity-and-access.md``.
"""

from __future__ import annotations

from knhk.identity.rbac import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    Principal,
    authorize,
    needs_mfa,
    permissions_of,
)

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "Principal",
    "authorize",
    "needs_mfa",
    "permissions_of",
]
