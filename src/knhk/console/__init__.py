"""The operator console (SPEC §10; ``docs/console.md``): server-rendered pages for approvers and auditors,
served by the service under ``/console``.

A face over :class:`~knhk.app.application.Application` only — the same operations, authorization, segregation
of duties and audit as the API. People sign in with OpenID Connect (authorization code, PKCE, state, nonce) or,
with no issuer configured, the local development issuer's own page; sessions are server-side (Redis when
configured). Proof bundles are verified in the browser with WebCrypto. It imports neither the service nor the
storage.
"""

from knhk.console.app import bind, create_console
from knhk.console.login import local_sign_in_code

__all__ = ["bind", "create_console", "local_sign_in_code"]
