"""Server-side console sessions (SPEC §10): Redis when configured, else this process's memory.

The browser holds only an opaque random session id (a cookie: ``Secure``, ``HttpOnly``, ``SameSite=Lax``); the
store holds the principal established at sign-in, the session's CSRF token and its two clocks. Keys are the
SHA-256 of the id, so the store never holds a usable cookie value. A session ends

* ``console_session_max_s`` after sign-in (absolute, default 60 min),
* after ``console_session_idle_s`` without a request (default 60 min), or ``console_session_idle_phi_s``
  (default 15 min) when the principal's sector is a PHI sector (``KNHK_PHI_SECTORS``, HIPAA),
* at sign-out (deleted server-side, so a copied cookie is worthless afterwards).

A new id is issued at every sign-in (session fixation). With Redis configured but unreachable, the console
answers 503 rather than falling back: sessions must end everywhere when they end. Pending sign-ins (state,
nonce, PKCE verifier) are kept the same way, for ten minutes, under their own cookie.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from knhk.config import Settings
from knhk.errors import DependencyUnavailableError
from knhk.identity.rbac import Principal

SESSION_COOKIE = "knhk_console"
LOGIN_COOKIE = "knhk_console_login"
LOGIN_TTL_S = 600


class Store(Protocol):
    """A key → bytes store with expiry (Redis, or memory)."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStore:
    """One process's sessions (``knhk serve`` with one worker and no Redis)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._items: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[1] <= self._clock():
                del self._items[key]
                return None
            return item[0]

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        with self._lock:
            now = self._clock()
            if len(self._items) > 10_000:
                for stale in [k for k, (_, until) in self._items.items() if until <= now]:
                    del self._items[stale]
            self._items[key] = (value, now + ttl_s)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class RedisStore:
    """Sessions in Redis (shared by every worker and replica); unreachable → 503."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        import redis

        try:
            return fn()
        except redis.RedisError as exc:
            raise DependencyUnavailableError(f"console sessions are unavailable (Redis: {exc})",
                                             retry_after=5) from exc

    def get(self, key: str) -> bytes | None:
        value = self._call("get", lambda: self._redis.get(key))
        return None if value is None else bytes(value)

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._call("set", lambda: self._redis.set(key, value, ex=max(1, ttl_s)))

    def delete(self, key: str) -> None:
        self._call("delete", lambda: self._redis.delete(key))


@dataclass(frozen=True)
class Session:
    """One signed-in person: who they are (as verified at sign-in), the CSRF token, the clocks."""

    id: str
    principal: Principal
    csrf: str
    created: float
    last_seen: float
    idle_s: int
    how: str  # "oidc" or "local"

    def to_bytes(self) -> bytes:
        p = self.principal
        return orjson.dumps({"principal": {**asdict(p), "roles": sorted(p.roles), "groups": list(p.groups)},
                             "csrf": self.csrf, "created": self.created, "last_seen": self.last_seen,
                             "idle_s": self.idle_s, "how": self.how})

    @classmethod
    def from_bytes(cls, session_id: str, raw: bytes) -> Session:
        data = orjson.loads(raw)
        p: dict[str, Any] = data["principal"]
        principal = Principal(**{**p, "roles": frozenset(p["roles"]), "groups": tuple(p["groups"])})
        return cls(session_id, principal, data["csrf"], data["created"], data["last_seen"], data["idle_s"],
                   data["how"])


def _key(prefix: str, kind: str, token: str) -> str:
    return f"{prefix}{kind}:{hashlib.sha256(token.encode()).hexdigest()}"


class Sessions:
    """Sessions and pending sign-ins over a :class:`Store`, with this installation's timeouts."""

    def __init__(self, settings: Settings, store: Store | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store: Store = store or (RedisStore(settings.redis_url) if settings.redis_url else MemoryStore(clock))
        self.clock = clock
        self.prefix = settings.console_session_prefix

    def idle_timeout(self, principal: Principal) -> int:
        """Seconds of inactivity that end this principal's session (shorter in PHI sectors)."""
        if principal.sector is not None and principal.sector in self.settings.phi_sectors:
            return min(self.settings.console_session_idle_phi_s, self.settings.console_session_idle_s)
        return self.settings.console_session_idle_s

    def _ttl(self, session: Session) -> int:
        absolute = session.created + self.settings.console_session_max_s - session.last_seen
        return max(1, int(min(absolute, session.idle_s)) + 1)

    def begin(self, principal: Principal, *, how: str, replacing: str | None = None) -> Session:
        """Start a session under a new id (the previous one, if any, is ended: no fixation)."""
        if replacing:
            self.end(replacing)
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), principal, secrets.token_urlsafe(32), now, now,
                          self.idle_timeout(principal), how)
        self.store.set(_key(self.prefix, "session", session.id), session.to_bytes(), self._ttl(session))
        return session

    def touch(self, session_id: str | None) -> Session | None:
        """The live session of this id, its idle clock restarted; None if there is none or it has timed out."""
        if not session_id:
            return None
        key = _key(self.prefix, "session", session_id)
        raw = self.store.get(key)
        if raw is None:
            return None
        session = Session.from_bytes(session_id, raw)
        now = self.clock()
        if now - session.created >= self.settings.console_session_max_s or now - session.last_seen >= session.idle_s:
            self.store.delete(key)
            return None
        fresh = Session(session.id, session.principal, session.csrf, session.created, now, session.idle_s,
                        session.how)
        self.store.set(key, fresh.to_bytes(), self._ttl(fresh))
        return fresh

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.store.delete(_key(self.prefix, "session", session_id))

    # -- pending sign-ins -------------------------------------------------------------------------------------
    def start_login(self, values: Mapping[str, Any]) -> str:
        """Remember a sign-in in progress (state, nonce, verifier …); returns the id for its cookie."""
        login_id = secrets.token_urlsafe(32)
        payload = orjson.dumps({**values, "started": self.clock()})
        self.store.set(_key(self.prefix, "login", login_id), payload, LOGIN_TTL_S)
        return login_id

    def take_login(self, login_id: str | None) -> dict[str, Any] | None:
        """The pending sign-in of this id, used up (a state works once)."""
        if not login_id:
            return None
        key = _key(self.prefix, "login", login_id)
        raw = self.store.get(key)
        if raw is None:
            return None
        self.store.delete(key)
        values: dict[str, Any] = orjson.loads(raw)
        if self.clock() - float(values.get("started", 0)) > LOGIN_TTL_S:
            return None
        return values

    def peek_login(self, login_id: str | None) -> dict[str, Any] | None:
        """The pending sign-in of this id, left in place (the local sign-in form's CSRF token)."""
        if not login_id:
            return None
        raw = self.store.get(_key(self.prefix, "login", login_id))
        return None if raw is None else dict(orjson.loads(raw))
