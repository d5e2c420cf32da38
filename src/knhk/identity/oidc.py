"""Bearer-token authentication: OpenID Connect access tokens (JWT) from one or more trusted issuers.

Standards followed:

* RFC 7519 (JWT) and RFC 7515 (JWS) for the token format; RFC 6750 for the ``Authorization: Bearer`` header
  and the ``WWW-Authenticate`` challenge of a 401.
* RFC 8725 (JWT Best Current Practices): an algorithm allow-list (RS256, ES256, EdDSA; never ``none``, never
  HMAC, so an HS256 token "signed" with the public key is refused), each key bound to one algorithm that must
  match the token's ``alg`` and its key type, ``iss`` matched exactly, ``aud`` required, explicit typing
  checked when present.
* OpenID Connect Discovery 1.0: ``<issuer>/.well-known/openid-configuration`` → ``jwks_uri`` (the document's
  ``issuer`` must equal the configured one), fetched with httpx and timeouts; RFC 7517 JWK Sets.

Behaviour (SPEC §10): the JWKS of each issuer is cached; a token whose ``kid`` is not in it causes one refetch,
rate-limited to one per issuer per ``jwks_refetch_interval_s`` (within the limit an unknown kid is a 401, not
a fetch storm). ``exp``/``nbf`` are checked with a leeway (default 60 s) and ``iat`` must be younger than
``max_token_age_s``. Roles come from the issuer's configured claim through its group → role map (unknown
groups are ignored). MFA is proven by ``amr`` containing a configured value or ``acr`` equal to one.

Every rejection is a :class:`BearerTokenError` (an :class:`AuthenticationError`, 401) whose message says what
was wrong and never contains the token. An issuer that cannot be reached when its keys are needed is a
:class:`DependencyUnavailableError` (503). Verified tokens are cached by SHA-256 of the token until they
expire (or reach the maximum age), so a repeated token costs one hash and one dictionary lookup.

Discovery and JWKS fetches are idempotent reads: each goes through the issuer's circuit breaker
(``oidc:<issuer>``, :mod:`knhk.ops.resilience`; open after 5 failed fetches, then 503 ``circuit_open`` without
a request) and is retried on transport errors, 429 and 5xx (``knhk_retries_total{operation="oidc.fetch"}``)
with no retry whose wait would end later than one HTTP timeout after the first attempt began.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.exceptions import InvalidSignatureError, PyJWTError

from knhk.errors import AuthenticationError, ConfigurationError, DependencyUnavailableError
from knhk.identity.rbac import DEFAULT_MFA_REQUIRED_ROLES, ROLES, Principal, authorize
from knhk.ops import resilience
from knhk.ops.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("knhk.auth")

#: The largest NumericDate accepted (year ~2286 needs 10 digits; 2^53 keeps every value exact as a float).
MAX_NUMERIC_DATE = 2**53

#: The only JWS algorithms accepted, ever (RFC 8725 §3.1).
ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")

#: Group → role map used when an issuer configures none (the group names of the reference deployment).
DEFAULT_GROUP_ROLES: Mapping[str, frozenset[str]] = {
    "knhk-observers": frozenset({"observer"}),
    "knhk-readonly": frozenset({"observer"}),
    "knhk-analysts": frozenset({"analyst"}),
    "knhk-data-analysts": frozenset({"analyst"}),
    "knhk-proposers": frozenset({"proposer"}),
    "knhk-ml-engineers": frozenset({"proposer"}),
    "knhk-validators": frozenset({"validator"}),
    "knhk-approvers": frozenset({"validator"}),
    "knhk-operators": frozenset({"operator"}),
    "knhk-deployers": frozenset({"operator"}),
    "knhk-admins": frozenset({"administrator"}),
    "knhk-superusers": frozenset({"administrator"}),
    "knhk-ingestors": frozenset({"ingestor"}),
}

DEFAULT_MFA_AMR: frozenset[str] = frozenset({"mfa", "otp", "hwk"})

_ACCEPTED_TYPES = {"jwt", "at+jwt", "application/at+jwt"}
_MAX_TOKEN_BYTES = 16 * 1024
_MAX_DOCUMENT_BYTES = 1024 * 1024
_MIN_RSA_BITS = 2048
_FAILURE_BACKOFF_S = 5.0  # after a failed key fetch, answer 503 without retrying for this long


class _TransientFetchError(DependencyUnavailableError):
    """A provider fetch that failed in a way worth one more try: no connection, a timeout, 429 or 5xx."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _TransientFetchError)


_REALM = "knhk"


# --------------------------------------------------------------------------------------------------- errors


class BearerTokenError(AuthenticationError):
    """A missing or invalid bearer token (401). ``www_authenticate`` is the RFC 6750 challenge to send."""

    def __init__(self, message: str, reason: str, *, issuer: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason
        self.issuer = issuer
        if reason == "missing":
            self.www_authenticate = f'Bearer realm="{_REALM}"'
        else:
            description = "".join(c for c in message if 0x20 <= ord(c) < 0x7F and c not in '"\\')[:200]
            self.www_authenticate = (f'Bearer realm="{_REALM}", error="invalid_token", '
                                     f'error_description="{description}"')
        self.details["www_authenticate"] = self.www_authenticate


@dataclass(frozen=True)
class AuthenticationFailure:
    """What the ``on_failure`` hook receives: enough to audit a failure, nothing that identifies a person.

    ``issuer`` is the (unverified) ``iss`` claim when the token could be parsed; ``token_fingerprint`` is the
    first 16 hex digits of the token's SHA-256, for correlating repeated attempts without storing the token.
    """

    reason: str
    message: str
    issuer: str | None
    token_fingerprint: str | None


# --------------------------------------------------------------------------------------------------- config


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_fetch_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback_url(url):
        return  # a provider on this machine (development, tests)
    raise ConfigurationError(f"{what} {url!r} must be an https:// URL (http:// only on a loopback address)")


def _role_set(value: object, where: str) -> frozenset[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple | set | frozenset) or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"{where} must be a role name or a list of role names")
    unknown = sorted(set(names) - set(ROLES))
    if unknown:
        raise ConfigurationError(f"{where} names unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
    return frozenset(names)


def _str_set(value: object, where: str) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset) or not all(isinstance(i, str) for i in items):
        raise ConfigurationError(f"{where} must be a string or a list of strings")
    return frozenset(items)


@dataclass(frozen=True)
class IssuerConfig:
    """One trusted issuer (SPEC §10): its audience, claims and group → role map.

    ``jwks_uri`` skips discovery; ``jwks_file`` reads the key set from a file instead of HTTP (the local dev
    issuer, or an air-gapped deployment). Otherwise the key set is found by OpenID Connect Discovery.
    """

    issuer: str
    audience: str
    user_id_claim: str = "sub"
    roles_claim: str = "groups"
    group_roles: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_GROUP_ROLES))
    sector_claim: str = "sector"
    mfa_amr: frozenset[str] = DEFAULT_MFA_AMR
    mfa_acr: frozenset[str] = frozenset()
    jwks_uri: str | None = None
    jwks_file: Path | None = None
    algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ConfigurationError("an OIDC issuer needs a non-empty issuer and audience")
        if self.jwks_file is None:
            _check_fetch_url(self.issuer, "OIDC issuer")
            if self.jwks_uri is not None:
                _check_fetch_url(self.jwks_uri, "jwks_uri")
        bad = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
        if bad or not self.algorithms:
            raise ConfigurationError(f"issuer {self.issuer}: algorithms must be a non-empty subset of "
                                     f"{', '.join(ALLOWED_ALGORITHMS)} (not {', '.join(bad)})")
        if not self.user_id_claim or not self.roles_claim:
            raise ConfigurationError(f"issuer {self.issuer}: user_id_claim and roles_claim must be non-empty")

    _KEYS = frozenset({"issuer", "audience", "user_id_claim", "roles_claim", "group_roles", "sector_claim",
                       "mfa_amr", "mfa_acr", "jwks_uri", "jwks_file", "algorithms"})

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object], *, sector_claim: str = "sector",
                     mfa_amr: Iterable[str] = DEFAULT_MFA_AMR, mfa_acr: Iterable[str] = ()) -> IssuerConfig:
        """Build from one entry of ``KNHK_OIDC_ISSUERS``; the keyword arguments are the global defaults."""
        unknown = sorted(set(raw) - cls._KEYS)
        if unknown:
            raise ConfigurationError(f"unknown OIDC issuer setting(s) {', '.join(unknown)}; "
                                     f"known: {', '.join(sorted(cls._KEYS))}")
        issuer, audience = raw.get("issuer"), raw.get("audience")
        if not isinstance(issuer, str) or not isinstance(audience, str):
            raise ConfigurationError("each OIDC issuer needs 'issuer' and 'audience' strings")
        group_roles: dict[str, frozenset[str]] = dict(DEFAULT_GROUP_ROLES)
        if "group_roles" in raw:
            mapping = raw["group_roles"]
            if not isinstance(mapping, Mapping):
                raise ConfigurationError(f"issuer {issuer}: group_roles must map group names to roles")
            group_roles = {str(g): _role_set(r, f"issuer {issuer}: group_roles[{g!r}]") for g, r in mapping.items()}

        def text(key: str, default: str) -> str:
            value = raw.get(key, default)
            if not isinstance(value, str):
                raise ConfigurationError(f"issuer {issuer}: {key} must be a string")
            return value

        def optional(key: str) -> str | None:
            value = raw.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"issuer {issuer}: {key} must be a string")
            return value

        algorithms = raw.get("algorithms", ALLOWED_ALGORITHMS)
        jwks_file = optional("jwks_file")
        return cls(
            issuer=issuer,
            audience=audience,
            user_id_claim=text("user_id_claim", "sub"),
            roles_claim=text("roles_claim", "groups"),
            group_roles=group_roles,
            sector_claim=text("sector_claim", sector_claim),
            mfa_amr=_str_set(raw.get("mfa_amr", list(mfa_amr)), f"issuer {issuer}: mfa_amr"),
            mfa_acr=_str_set(raw.get("mfa_acr", list(mfa_acr)), f"issuer {issuer}: mfa_acr"),
            jwks_uri=optional("jwks_uri"),
            jwks_file=Path(jwks_file) if jwks_file else None,
            algorithms=tuple(sorted(_str_set(algorithms, f"issuer {issuer}: algorithms"))),
        )


# --------------------------------------------------------------------------------------------------- keys


def _algorithm_for(jwk: Mapping[str, Any]) -> str | None:
    """The one algorithm a JWK may verify (RFC 7517 ``alg`` or, absent, implied by its key type)."""
    alg = jwk.get("alg")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    implied = {"RSA": "RS256", "EC": "ES256" if crv == "P-256" else None,
               "OKP": "EdDSA" if crv == "Ed25519" else None}.get(str(kty))
    if alg is None:
        return implied
    # An explicit alg must agree with the key type, else the key is unusable (never trust alg alone).
    return alg if alg == implied else None


@dataclass
class _KeySet:
    by_kid: dict[str, jwt.PyJWK]
    without_kid: list[jwt.PyJWK]
    fetched_at: float

    def find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is not None:
            return self.by_kid.get(kid)
        candidates = [k for k in (*self.by_kid.values(), *self.without_kid) if k.algorithm_name == alg]
        return candidates[0] if len(candidates) == 1 else None


def parse_jwks(document: object, allowed: Sequence[str], *, source: str) -> tuple[dict[str, jwt.PyJWK],
                                                                                   list[jwt.PyJWK]]:
    """The usable verification keys of a JWK Set (RFC 7517 §5); unusable keys are skipped with a warning."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise DependencyUnavailableError(f"the JWK Set from {source} is not a JSON object with a 'keys' list")
    by_kid: dict[str, jwt.PyJWK] = {}
    without: list[jwt.PyJWK] = []
    for raw in document["keys"]:
        if not isinstance(raw, Mapping):
            continue
        kid = raw.get("kid")
        label = f"key {kid!r} of {source}"
        if raw.get("use", "sig") != "sig" or ("key_ops" in raw and "verify" not in (raw.get("key_ops") or [])):
            log.info("%s skipped: not a signature-verification key (use/key_ops)", label)
            continue
        if "d" in raw or raw.get("kty") == "oct":
            log.warning("%s skipped: a JWK Set must publish public keys only", label)
            continue
        alg = _algorithm_for(raw)
        if alg is None or alg not in allowed:
            log.info("%s skipped: algorithm %s is not allowed", label, raw.get("alg") or raw.get("kty"))
            continue
        try:
            key = jwt.PyJWK(dict(raw), algorithm=alg)
        except PyJWTError as exc:
            log.warning("%s skipped: %s", label, exc)
            continue
        if isinstance(key.key, RSAPublicKey) and key.key.key_size < _MIN_RSA_BITS:
            log.warning("%s skipped: RSA keys need at least %d bits", label, _MIN_RSA_BITS)
            continue
        if isinstance(kid, str):
            by_kid[kid] = key
        else:
            without.append(key)
    return by_kid, without


@dataclass
class _IssuerState:
    config: IssuerConfig
    lock: threading.Lock = field(default_factory=threading.Lock)
    jwks_uri: str | None = None
    keys: _KeySet | None = None
    last_fetch: float | None = None  # monotonic time of the last fetch attempt
    last_error: DependencyUnavailableError | None = None  # why the last attempt failed, if it did
    fetches: int = 0
    suppressed_refetches: int = 0


# --------------------------------------------------------------------------------------------------- claims


def _b64url_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise BearerTokenError("malformed token: a segment is not base64url-encoded JSON", "malformed") from exc
    if not isinstance(value, dict):
        raise BearerTokenError("malformed token: a segment is not a JSON object", "malformed")
    return value


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _number(claims: Mapping[str, Any], name: str, issuer: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BearerTokenError(f"malformed token: the {name} claim is not a number", "malformed", issuer=issuer)
    # NaN compares false with everything (an iat of NaN would pass every age check) and ±Infinity or a huge
    # integer is no time at all: a time claim must be a finite number of seconds (RFC 7519 §2 NumericDate)
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_NUMERIC_DATE:
        raise BearerTokenError(f"malformed token: the {name} claim is not a finite number of seconds",
                               "malformed", issuer=issuer)
    return float(value)


def _required_number(claims: Mapping[str, Any], name: str, issuer: str) -> float:
    value = _number(claims, name, issuer)
    if value is None:
        raise BearerTokenError(f"malformed token: the {name} claim is missing", "malformed", issuer=issuer)
    return value


def _short(text: object) -> str:
    out = repr(text)
    return out if len(out) <= 120 else out[:117] + "..."


# --------------------------------------------------------------------------------------------------- authenticator


class Authenticator:
    """Turns an ``Authorization`` header into a verified :class:`Principal`, or raises.

    Thread-safe. Call :meth:`authenticate` from a sync FastAPI dependency (it runs in the thread pool), or
    ``await`` :meth:`authenticate_async` from an async one (cache hits run inline; a verification that may
    fetch keys runs in a worker thread).
    """

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        *,
        leeway_s: float = 60,
        max_token_age_s: float = 3600,
        jwks_refetch_interval_s: float = 60,
        jwks_max_age_s: float = 3600,
        http_timeout_s: float = 5.0,
        token_cache_size: int = 10_000,
        http_client: httpx.Client | None = None,
        clock: Clock = SYSTEM_CLOCK,
        monotonic: Callable[[], float] = time.monotonic,
        on_failure: Callable[[AuthenticationFailure], None] | None = None,
        mfa_required_roles: Sequence[str] = DEFAULT_MFA_REQUIRED_ROLES,
    ) -> None:
        if not issuers:
            raise ConfigurationError("an authenticator needs at least one trusted issuer")
        self._issuers: dict[str, _IssuerState] = {}
        for config in issuers:
            if config.issuer in self._issuers:
                raise ConfigurationError(f"issuer {config.issuer} is configured twice")
            self._issuers[config.issuer] = _IssuerState(config, jwks_uri=config.jwks_uri)
        self.leeway_s = leeway_s
        self.max_token_age_s = max_token_age_s
        self.jwks_refetch_interval_s = jwks_refetch_interval_s
        self.jwks_max_age_s = jwks_max_age_s
        self.clock = clock
        self.monotonic = monotonic
        self.on_failure = on_failure
        self.mfa_required_roles = tuple(_role_set(list(mfa_required_roles), "the MFA-required roles"))
        self._own_client = http_client is None
        self._http_timeout_s = http_timeout_s
        self._http = http_client or httpx.Client(
            timeout=httpx.Timeout(http_timeout_s), follow_redirects=False,
            headers={"accept": "application/json"},
        )
        self._cache_size = token_cache_size
        self._cache: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- public

    @property
    def issuers(self) -> tuple[IssuerConfig, ...]:
        return tuple(s.config for s in self._issuers.values())

    def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <JWT>`` header; 401 (BearerTokenError) if missing or
        invalid, 503 (DependencyUnavailableError) if the issuer's keys cannot be fetched."""
        token = self._bearer(authorization_header)
        return self.verify(token)

    async def authenticate_async(self, authorization_header: str | None) -> Principal:
        token = self._bearer(authorization_header)
        cached = self._cached(token)
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(self.verify, token)

    def verify(self, token: str) -> Principal:
        """Verify a bare JWT (see :meth:`authenticate`)."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        try:
            principal, valid_until = self._verify(token)
        except BearerTokenError as exc:
            self._report(exc, token)
            raise
        self._remember(token, principal, valid_until)
        return principal

    def authorize(self, principal: Principal, permission: str, *, mutating: bool) -> None:
        """:func:`~knhk.identity.rbac.authorize` with this installation's MFA-required roles."""
        authorize(principal, permission, mutating=mutating, mfa_required_roles=self.mfa_required_roles)

    def prefetch(self) -> dict[str, str | None]:
        """Load every issuer's key set now (start-up, readiness): issuer → None when its keys are loaded, else
        why not. Never raises; respects the same failure back-off as requests."""
        out: dict[str, str | None] = {}
        for issuer, state in self._issuers.items():
            try:
                with state.lock:
                    self._ensure_keys(state, self.monotonic())
                out[issuer] = None
            except DependencyUnavailableError as exc:
                out[issuer] = exc.message
        return out

    def usable_keys(self, issuer: str) -> int:
        """How many verification keys of the issuer's loaded key set are usable (0 before a load, or when the
        set published none KNHK accepts)."""
        keys = self._issuers[issuer].keys
        return 0 if keys is None else len(keys.by_kid) + len(keys.without_kid)

    def jwks_fetches(self, issuer: str) -> int:
        """How many times this authenticator fetched (or tried to fetch) the issuer's key set."""
        return self._issuers[issuer].fetches

    def suppressed_refetches(self, issuer: str) -> int:
        """How many unknown-kid refetches the rate limit refused for the issuer."""
        return self._issuers[issuer].suppressed_refetches

    def clear_token_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> Authenticator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- header and cache

    def _bearer(self, header: str | None) -> str:
        if header is None or not header.strip():
            self._report(BearerTokenError("missing bearer token", "missing"), None)
            raise BearerTokenError("missing bearer token", "missing")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            err = BearerTokenError("the Authorization header must use the Bearer scheme", "missing")
            self._report(err, None)
            raise err
        token = token.strip()
        if not token:
            err = BearerTokenError("missing bearer token", "missing")
            self._report(err, None)
            raise err
        return token

    def _now(self) -> float:
        return self.clock.now_us() / 1_000_000

    def _cached(self, token: str) -> Principal | None:
        if self._cache_size <= 0:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        with self._cache_lock:
            hit = self._cache.get(digest)
            if hit is None:
                return None
            principal, valid_until = hit
            if self._now() >= valid_until:
                del self._cache[digest]
                return None
            return principal

    def _remember(self, token: str, principal: Principal, valid_until: float) -> None:
        if self._cache_size <= 0:
            return
        digest = hashlib.sha256(token.encode()).digest()
        with self._cache_lock:
            self._cache[digest] = (principal, valid_until)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _report(self, exc: BearerTokenError, token: str | None) -> None:
        if self.on_failure is None:
            return
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16] if token else None
        try:
            self.on_failure(AuthenticationFailure(exc.reason, exc.message, exc.issuer, fingerprint))
        except Exception:  # the hook must never turn a 401 into something else
            log.exception("the authentication-failure hook raised")

    # -- verification

    def _verify(self, token: str) -> tuple[Principal, float]:
        if len(token) > _MAX_TOKEN_BYTES:
            raise BearerTokenError(f"malformed token: longer than {_MAX_TOKEN_BYTES} bytes", "malformed")
        parts = token.split(".")
        if len(parts) != 3:
            raise BearerTokenError("malformed token: a JWS compact token has three dot-separated parts",
                                   "malformed")
        header = _b64url_json(parts[0])
        unverified = _b64url_json(parts[1])
        claimed_issuer = unverified.get("iss")
        issuer_text = claimed_issuer if isinstance(claimed_issuer, str) else None

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise BearerTokenError(f"disallowed algorithm {_short(alg)}; allowed: {', '.join(ALLOWED_ALGORITHMS)}",
                                   "disallowed_algorithm", issuer=issuer_text)
        if "crit" in header:
            raise BearerTokenError("malformed token: critical header parameters are not supported", "malformed",
                                   issuer=issuer_text)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES):
            raise BearerTokenError(f"wrong token type {_short(typ)}: expected an access token (JWT or at+jwt)",
                                   "wrong_type", issuer=issuer_text)
        if issuer_text is None:
            raise BearerTokenError("malformed token: the iss claim is missing", "malformed")
        state = self._issuers.get(issuer_text)
        if state is None:
            raise BearerTokenError(f"wrong issuer: {_short(issuer_text)} is not a trusted issuer", "wrong_issuer",
                                   issuer=issuer_text)
        config = state.config
        if alg not in config.algorithms:
            raise BearerTokenError(f"disallowed algorithm {alg} for issuer {config.issuer}",
                                   "disallowed_algorithm", issuer=issuer_text)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise BearerTokenError("malformed token: kid is not a string", "malformed", issuer=issuer_text)

        key = self._key(state, kid, alg)
        if key is None:
            raise BearerTokenError(
                f"unknown key: issuer {config.issuer} has no {alg} signing key "
                + (f"with kid {_short(kid)}" if kid is not None else "that a token without kid can name"),
                "unknown_key", issuer=issuer_text)
        if key.algorithm_name != alg:
            raise BearerTokenError(f"disallowed algorithm {alg}: key {_short(kid)} is for {key.algorithm_name}",
                                   "disallowed_algorithm", issuer=issuer_text)
        try:
            jwt.api_jws.PyJWS(algorithms=[alg]).decode_complete(token, key, algorithms=[alg])
        except InvalidSignatureError as exc:
            raise BearerTokenError("bad signature", "bad_signature", issuer=issuer_text) from exc
        except PyJWTError as exc:
            raise BearerTokenError(f"malformed token: {exc}", "malformed", issuer=issuer_text) from exc
        return self._principal(config, unverified)

    def _principal(self, config: IssuerConfig, claims: Mapping[str, Any]) -> tuple[Principal, float]:
        iss = config.issuer
        now = self._now()
        leeway = self.leeway_s
        exp = _required_number(claims, "exp", iss)
        nbf = _number(claims, "nbf", iss)
        iat = _required_number(claims, "iat", iss)
        if now > exp + leeway:
            raise BearerTokenError(f"token expired {int(now - exp)} s ago", "expired", issuer=iss)
        if nbf is not None and now + leeway < nbf:
            raise BearerTokenError(f"token not yet valid (nbf is {int(nbf - now)} s ahead)", "not_yet_valid",
                                   issuer=iss)
        if now + leeway < iat:
            raise BearerTokenError(f"token not yet valid (issued {int(iat - now)} s in the future)",
                                   "not_yet_valid", issuer=iss)
        if now - iat > self.max_token_age_s:
            raise BearerTokenError(f"token too old: issued {int(now - iat)} s ago, at most "
                                   f"{int(self.max_token_age_s)} s allowed", "too_old", issuer=iss)
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise BearerTokenError("wrong audience: the aud claim is missing or not a string or list", "wrong_audience",
                                   issuer=iss)
        if config.audience not in audiences:
            raise BearerTokenError(f"wrong audience: the token is not for {config.audience}", "wrong_audience",
                                   issuer=iss)
        user_id = _claim(claims, config.user_id_claim)
        if not isinstance(user_id, str) or not user_id:
            raise BearerTokenError(f"malformed token: the user id claim {config.user_id_claim} is missing",
                                   "malformed", issuer=iss)
        groups = tuple(_strings(_claim(claims, config.roles_claim)))
        roles: set[str] = set()
        for group in groups:
            roles |= config.group_roles.get(group, frozenset())
        amr = set(_strings(claims.get("amr")))
        acr = claims.get("acr")
        mfa = bool(amr & config.mfa_amr) or (isinstance(acr, str) and acr in config.mfa_acr)
        sector_value = _claim(claims, config.sector_claim)
        sectors = _strings(sector_value)
        sector = sectors[0] if len(sectors) == 1 else None
        jti = claims.get("jti")
        client_id = claims.get("client_id", claims.get("azp"))
        principal = Principal(
            identity=f"{iss}#{user_id}", issuer=iss, subject=user_id, roles=frozenset(roles), mfa=mfa,
            sector=sector, token_id=jti if isinstance(jti, str) else None, expires_at=int(exp),
            client_id=client_id if isinstance(client_id, str) else None, groups=groups,
        )
        return principal, min(exp + leeway, iat + self.max_token_age_s)

    # -- key sets

    def _key(self, state: _IssuerState, kid: str | None, alg: str) -> jwt.PyJWK | None:
        with state.lock:
            now = self.monotonic()
            keys = self._ensure_keys(state, now)
            key = keys.find(kid, alg)
            if key is not None:
                return key
            if state.last_fetch is not None and now - state.last_fetch < self.jwks_refetch_interval_s:
                state.suppressed_refetches += 1
                return None
            state.keys = self._fetch(state, now)
            return state.keys.find(kid, alg)

    def _ensure_keys(self, state: _IssuerState, now: float) -> _KeySet:
        """The issuer's key set, fetched when there is none yet or it is older than ``jwks_max_age_s``.
        Call with ``state.lock`` held."""
        if state.keys is None:
            backoff = min(self.jwks_refetch_interval_s, _FAILURE_BACKOFF_S)
            if state.last_error is not None and state.last_fetch is not None and now - state.last_fetch < backoff:
                # The provider failed moments ago: answer 503 at once instead of queueing behind timeouts.
                raise DependencyUnavailableError(state.last_error.message,
                                                 retry_after=max(1, int(backoff - (now - state.last_fetch))))
            state.keys = self._fetch(state, now)
        elif now - state.keys.fetched_at > self.jwks_max_age_s:
            try:
                state.keys = self._fetch(state, now)
            except DependencyUnavailableError as exc:  # keep serving with the keys we have
                log.warning("keeping the cached JWK Set of %s: %s", state.config.issuer, exc.message)
        return state.keys

    def _fetch(self, state: _IssuerState, now: float) -> _KeySet:
        state.last_fetch = now
        state.fetches += 1
        try:
            keys = self._load_keys(state, now)
        except DependencyUnavailableError as exc:
            state.last_error = exc
            raise
        state.last_error = None
        return keys

    def _load_keys(self, state: _IssuerState, now: float) -> _KeySet:
        config = state.config
        if config.jwks_file is not None:
            try:
                document = json.loads(config.jwks_file.read_text())
            except (OSError, ValueError) as exc:
                raise DependencyUnavailableError(
                    f"cannot read the JWK Set file {config.jwks_file} of issuer {config.issuer}: {exc}") from exc
            source = str(config.jwks_file)
        else:
            if state.jwks_uri is None:
                state.jwks_uri = self._discover(config)
            document = self._get_json(state.jwks_uri, config.issuer, "JWK Set")
            source = state.jwks_uri
        by_kid, without = parse_jwks(document, config.algorithms, source=source)
        log.info("fetched the JWK Set of %s: %d usable key(s)", config.issuer, len(by_kid) + len(without))
        return _KeySet(by_kid, without, now)

    def _discover(self, config: IssuerConfig) -> str:
        url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get_json(url, config.issuer, "discovery document")
        if not isinstance(document, Mapping):
            raise DependencyUnavailableError(f"the discovery document of {config.issuer} is not a JSON object")
        if document.get("issuer") != config.issuer:
            raise DependencyUnavailableError(
                f"the discovery document at {url} names issuer {_short(document.get('issuer'))}, "
                f"not {config.issuer} (OpenID Connect Discovery §4.3)")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise DependencyUnavailableError(f"the discovery document of {config.issuer} has no jwks_uri")
        try:
            _check_fetch_url(jwks_uri, "jwks_uri")
        except ConfigurationError as exc:
            raise DependencyUnavailableError(f"issuer {config.issuer}: {exc.message}") from exc
        return jwks_uri

    def _get_with_retries(self, url: str, issuer: str, what: str) -> httpx.Response:
        retrying = resilience.idempotent_retry("oidc.fetch", retry_on=_transient, deadline_s=self._http_timeout_s)
        return retrying(self._get_once)(url, issuer, what)

    def _get_once(self, url: str, issuer: str, what: str) -> httpx.Response:
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise _TransientFetchError(
                f"identity provider {issuer} unreachable: fetching its {what} from {url} failed "
                f"({type(exc).__name__})") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _TransientFetchError(
                f"identity provider {issuer} answered HTTP {response.status_code} for its {what} ({url})")
        return response

    def _get_json(self, url: str, issuer: str, what: str) -> object:
        """GET a JSON document of the provider: through the issuer's circuit breaker (``oidc:<issuer>``), retried
        (an idempotent read) on transport errors, 429 and 5xx within one HTTP timeout of waiting."""
        with resilience.breaker_for(f"oidc:{issuer}").guard():
            response = self._get_with_retries(url, issuer, what)
        if response.status_code != 200:
            raise DependencyUnavailableError(
                f"identity provider {issuer} answered HTTP {response.status_code} for its {what} ({url})")
        if len(response.content) > _MAX_DOCUMENT_BYTES:
            raise DependencyUnavailableError(f"the {what} of {issuer} is larger than {_MAX_DOCUMENT_BYTES} bytes")
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise DependencyUnavailableError(f"the {what} of {issuer} at {url} is not JSON") from exc
