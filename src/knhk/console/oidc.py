"""Signing in to the console with OpenID Connect: the authorization code flow with PKCE, ``state`` and ``nonce``.

The client side is Authlib's (``OAuth2Client`` for the authorization URL, PKCE S256 and the code exchange;
``CodeIDToken`` for the ID token's ``iss``, ``aud``, ``exp`` and ``nonce``). The person's principal is then
established exactly as for an API request: the access token (asked for the issuer's KNHK audience with an RFC
8707 ``resource`` indicator) goes through the service's own :class:`~knhk.identity.oidc.Authenticator`, so roles,
sector and MFA come from the same claims through the same group → role map. The tokens themselves are dropped
once the principal is known: the browser never sees them and the session keeps only the principal.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt
from authlib.jose.errors import JoseError
from authlib.oauth2.rfc6749.errors import OAuth2Error

from knhk.config import Settings
from knhk.errors import AuthenticationError, ConfigurationError, DependencyUnavailableError
from knhk.identity.authenticator import issuer_configs
from knhk.identity.oidc import Authenticator, IssuerConfig
from knhk.identity.rbac import Principal
from knhk.ops.resilience import breaker_for, idempotent_retry


class _TransientRead(DependencyUnavailableError):
    """A provider read worth one more try: no connection, a timeout, 429 or 5xx."""


@dataclass(frozen=True)
class ProviderMetadata:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class OidcLogin:
    """The console's OIDC client for one configured issuer."""

    def __init__(self, settings: Settings, authenticator: Authenticator, *, http: httpx.Client | None = None) -> None:
        if not settings.console_oidc_client_id:
            raise ConfigurationError("KNHK_CONSOLE_OIDC_CLIENT_ID is needed to sign in to the console with OIDC")
        configs = issuer_configs(settings)
        wanted = settings.console_oidc_issuer or configs[0].issuer
        matching = [c for c in configs if c.issuer == wanted]
        if not matching:
            raise ConfigurationError(f"KNHK_CONSOLE_OIDC_ISSUER {wanted!r} is not one of KNHK_OIDC_ISSUERS")
        self.config: IssuerConfig = matching[0]
        self.client_id = settings.console_oidc_client_id
        secret = settings.console_oidc_client_secret
        self.client_secret = secret.get_secret_value() if secret else None
        self.scopes = settings.console_oidc_scopes
        self.mfa_acr = sorted(settings.auth_mfa_acr_values)
        self.authenticator = authenticator
        self.http = http or httpx.Client(timeout=settings.oidc_http_timeout_s)
        self.timeout_s = settings.oidc_http_timeout_s
        self._metadata: ProviderMetadata | None = None
        self._lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return self.config.issuer

    def _get(self, url: str, what: str) -> Any:
        """GET a JSON document of the provider (an idempotent read): through the issuer's breaker and retried on
        transport errors, 429 and 5xx, as the API's key fetches are (:mod:`knhk.identity.oidc`)."""
        retrying = idempotent_retry("oidc.fetch", retry_on=lambda exc: isinstance(exc, _TransientRead),
                                    deadline_s=self.timeout_s)
        with breaker_for(f"oidc:{self.issuer}").guard():
            return retrying(self._get_once)(url, what)

    def _get_once(self, url: str, what: str) -> Any:
        try:
            response = self.http.get(url)
        except httpx.HTTPError as exc:
            raise _TransientRead(f"the identity provider's {what} ({url}) cannot be read: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _TransientRead(f"the identity provider's {what} ({url}) cannot be read: HTTP "
                                 f"{response.status_code}")
        try:
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DependencyUnavailableError(f"the identity provider's {what} ({url}) cannot be read: {exc}") from exc

    def metadata(self) -> ProviderMetadata:
        """OpenID Connect Discovery, once (the document's issuer must be the configured one)."""
        with self._lock:
            if self._metadata is None:
                doc = self._get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration", "discovery document")
                if not isinstance(doc, dict) or doc.get("issuer") != self.issuer:
                    raise DependencyUnavailableError(f"the discovery document of {self.issuer} names another issuer")
                try:
                    self._metadata = ProviderMetadata(str(doc["authorization_endpoint"]), str(doc["token_endpoint"]),
                                                      str(doc["jwks_uri"]))
                except KeyError as exc:
                    raise DependencyUnavailableError(f"the discovery document of {self.issuer} lacks {exc}") from exc
            return self._metadata

    def _client(self, redirect_uri: str) -> OAuth2Client:
        method = "client_secret_basic" if self.client_secret else "none"
        return OAuth2Client(client_id=self.client_id, client_secret=self.client_secret, scope=self.scopes,
                            redirect_uri=redirect_uri, code_challenge_method="S256",
                            token_endpoint_auth_method=method, timeout=10)

    def begin(self, redirect_uri: str, *, step_up: bool = False) -> tuple[str, dict[str, Any]]:
        """The provider's authorization URL and what the callback must find again (state, nonce, verifier)."""
        meta = self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        extra: dict[str, Any] = {"nonce": nonce, "resource": self.config.audience}
        if step_up:
            extra["prompt"] = "login"
            extra["max_age"] = 0
            if self.mfa_acr:
                extra["acr_values"] = " ".join(self.mfa_acr)
        with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(meta.authorization_endpoint, state=state, code_verifier=verifier,
                                                     **extra)
        return url, {"state": state, "nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri}

    def complete(self, pending: dict[str, Any], params: dict[str, str]) -> Principal:
        """Check the callback against the pending sign-in, exchange the code, check the ID token, and establish
        the principal from the access token as the API would."""
        if "error" in params:
            raise AuthenticationError(f"the identity provider refused the sign-in: {params['error']}"
                                      f" {params.get('error_description', '')}".strip(), reason="provider_error")
        if not params.get("state") or not secrets.compare_digest(params["state"], str(pending["state"])):
            raise AuthenticationError("the sign-in answer does not match the sign-in started here (state)",
                                      reason="state_mismatch")
        if not params.get("code"):
            raise AuthenticationError("the sign-in answer carries no authorization code", reason="no_code")
        meta = self.metadata()
        try:
            with self._client(str(pending["redirect_uri"])) as client:
                token = client.fetch_token(meta.token_endpoint, grant_type="authorization_code", code=params["code"],
                                           code_verifier=pending["verifier"], resource=self.config.audience)
        except (OAuth2Error, httpx.HTTPError) as exc:
            raise AuthenticationError(f"the authorization code could not be exchanged: {exc}",
                                      reason="code_exchange") from exc
        id_token, access_token = token.get("id_token"), token.get("access_token")
        if not id_token or not access_token:
            raise AuthenticationError("the provider answered without an ID token and an access token",
                                      reason="no_tokens")
        claims = self._id_token_claims(str(id_token), str(pending["nonce"]))
        principal = self.authenticator.verify(str(access_token))
        if principal.issuer != self.issuer:
            raise AuthenticationError("the access token is from another issuer", reason="issuer_mismatch")
        subject = claims.get(self.config.user_id_claim)
        if subject is not None and str(subject) != principal.subject:
            raise AuthenticationError("the ID token and the access token name different people",
                                      reason="subject_mismatch")
        return principal

    def _id_token_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        keys = JsonWebKey.import_key_set(self._get(self.metadata().jwks_uri, "key set"))
        options = {"iss": {"essential": True, "value": self.issuer},
                   "aud": {"essential": True, "value": self.client_id},
                   "nonce": {"essential": True, "value": nonce}, "exp": {"essential": True}}
        try:
            claims = jwt.decode(id_token, keys, claims_options=options)
            claims.validate(leeway=60)
        except (JoseError, ValueError) as exc:
            raise AuthenticationError(f"the ID token is not valid: {exc}", reason="id_token") from exc
        return dict(claims)
