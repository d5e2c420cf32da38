"""Three layers of derived results (SPEC §11, the seed's §2): L1 in this process, L2 in Redis, L3 the database.

Only results *derived from content-addressed or append-only data* are cached, keyed by what they derive from:
a snapshot's content, schema, export or a diff by snapshot ids (a snapshot id is the hash of its content, so a
promotion can never make one stale), a consistency proof by its two tree sizes (the log is append-only). What
moves — the current snapshot of a sector, the head of a log — is never cached here: it is read from the
database and then looked up by id.

- **L1** — an in-process LRU (cachetools) bounded in *bytes* (``KNHK_CACHE_L1_BYTES``, default 10 MB); each
  entry is charged its encoded size, or an estimate for in-memory objects.
- **L2** — Redis (``KNHK_REDIS_URL``), shared by every worker and replica. KNHK bounds its own keyspace to
  ``KNHK_CACHE_L2_BYTES`` (default 100 MB): a Lua script charges each value's size to a counter and evicts the
  least recently used of KNHK's own entries (a sorted set of last-use times) until the total fits, and every
  entry also carries a TTL (``KNHK_CACHE_L2_TTL_S``), so it works on a Redis shared with others whatever its
  ``maxmemory-policy``. Values carry an HMAC-SHA-256 tag under the installation's secret: anything else found
  under a KNHK key is ignored, never served. Every Redis call goes through the ``redis`` circuit breaker
  (``knhk.ops.resilience``; 5 failures open it for 30 s) with a short timeout (``KNHK_REDIS_TIMEOUT_S``): a
  Redis that is down or hung costs at most that timeout for the breaker's first failures, then nothing until a
  health probe or the 30 s let a trial call through.
- **L3** — the loader the caller passes (a read of the database).

``knhk_cache_requests_total{layer,result}`` counts each lookup: ``l1``/``l2`` ``hit`` or ``miss`` (``error``:
Redis failed or its breaker is open), ``l3`` ``load``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import cachetools
import pybreaker
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from knhk.errors import CircuitOpenError
from knhk.ops.resilience import breaker_for
from knhk.ops.telemetry.metrics import CACHE_REQUESTS

log = logging.getLogger("knhk.cache")

T = TypeVar("T")
_TAG = 32  # bytes of the HMAC-SHA-256 tag in front of each L2 value
PREFIX = "{knhk}:c:"  # one hash tag: every key of KNHK's cache lives in one Redis Cluster slot

#: KEYS: value, index (zset of last use), sizes (hash), total; ARGV: value, ttl, budget, now
_PUT = """
local size = string.len(ARGV[1])
local budget = tonumber(ARGV[3])
if size > budget then return -1 end
local old = tonumber(redis.call('HGET', KEYS[3], KEYS[1]) or '0')
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[3], KEYS[1], size)
redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
local total = redis.call('INCRBY', KEYS[4], size - old)
while total > budget do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then break end
  local victim = oldest[1]
  local freed = tonumber(redis.call('HGET', KEYS[3], victim) or '0')
  redis.call('HDEL', KEYS[3], victim)
  redis.call('DEL', victim)
  total = redis.call('DECRBY', KEYS[4], freed)
end
return total
"""


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a derived result becomes bytes for L2 and back."""

    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]


TEXT: Codec[str] = Codec(str.encode, bytes.decode)


def _entry_size(entry: tuple[object, int]) -> int:
    return entry[1]


class ByteLRU:
    """L1: a thread-safe LRU of ``(value, size)`` whose sizes sum to at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru: cachetools.LRUCache[str, tuple[object, int]] = cachetools.LRUCache(
            maxsize=max(1, max_bytes), getsizeof=_entry_size)
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, object]:
        with self._lock:
            found = self._lru.get(key)
        return (False, None) if found is None else (True, found[0])

    def put(self, key: str, value: object, size: int) -> None:
        if self.max_bytes <= 0 or size > self.max_bytes:
            return
        with self._lock:
            self._lru[key] = (value, max(1, size))

    def discard(self, key: str) -> None:
        with self._lock:
            self._lru.pop(key, None)

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return int(self._lru.currsize)


#: The process's one Redis circuit breaker (:func:`knhk.ops.resilience.breaker_for`, SPEC §11 numbers,
#: exported as ``knhk_circuit_breaker_state{dependency="redis"}``), shared by the L2 cache and the rate limits;
#: while it is open, a ping every ``KNHK_BREAKER_PROBE_INTERVAL_S`` (and any health probe, :func:`probe_redis`)
#: half-opens it as soon as Redis answers, in every worker, whether or not that worker serves ``/health``.
REDIS_BREAKER = breaker_for("redis")


def _is_redis_failure(exc: BaseException) -> bool:
    return isinstance(exc, redis.RedisError)


def guarded_redis(fn: Callable[[], T]) -> T:
    """``fn()`` (a Redis call) through the breaker; :class:`RedisUnavailable` when it fails or is refused."""
    try:
        return REDIS_BREAKER.run(fn, _is_redis_failure)
    except CircuitOpenError as exc:
        raise RedisUnavailable("the Redis circuit breaker is open") from exc
    except redis.RedisError as exc:
        raise RedisUnavailable(f"Redis failed: {exc}") from exc


def probe_redis(ping: Callable[[], object]) -> bool:
    """Ping Redis directly (bounded by the client's timeout, whatever the breaker's state); an answer while
    the breaker is open half-opens it, so the next call is its trial and service resumes within one probe."""
    try:
        ping()
    except redis.RedisError:
        return False
    if REDIS_BREAKER.current_state == pybreaker.STATE_OPEN:
        REDIS_BREAKER.half_open()
    return True


def redis_options(timeout_s: float) -> dict[str, Any]:
    """Client options of every KNHK Redis connection: one attempt per call (the breaker, not the client,
    decides when to try again), each bounded by ``timeout_s``."""
    return {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "retry": Retry(NoBackoff(), 0)}


class RedisUnavailable(Exception):
    """Redis failed, timed out, or its circuit breaker is open (not a KNHK error: callers fall back)."""


class RedisLayer:
    """L2: KNHK's own byte-bounded LRU keyspace in Redis, every call through the ``redis`` breaker."""

    def __init__(self, client: redis.Redis, *, max_bytes: int, ttl_s: int, secret: bytes) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._secret = hashlib.sha256(b"knhk cache l2\x00" + secret).digest()
        self._put = client.register_script(_PUT)
        REDIS_BREAKER.recover_with(client.ping)  # while open, ping each probe interval; an answer half-opens it

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float, max_bytes: int, ttl_s: int, secret: bytes) -> RedisLayer:
        client = redis.Redis.from_url(url, **redis_options(timeout_s))
        return cls(client, max_bytes=max_bytes, ttl_s=ttl_s, secret=secret)

    # the bookkeeping keys
    INDEX, SIZES, TOTAL = PREFIX + "index", PREFIX + "sizes", PREFIX + "total"

    def _call(self, fn: Callable[[], T]) -> T:
        return guarded_redis(fn)

    def _tag(self, key: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, key.encode() + b"\x00" + payload, hashlib.sha256).digest()

    def get(self, key: str) -> bytes | None:
        """The payload under ``key`` (its last use recorded), ``None`` when absent or not KNHK's own."""
        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(key)
            pipe.zadd(self.INDEX, {key: time.time()}, xx=True)
            return pipe.execute()

        raw = self._call(run)[0]
        if raw is None:
            return None
        data = bytes(raw)
        payload = data[_TAG:]
        if len(data) < _TAG or not hmac.compare_digest(data[:_TAG], self._tag(key, payload)):
            log.warning("ignoring an L2 cache value under %s that KNHK did not write", key)
            return None
        return payload

    def put(self, key: str, payload: bytes) -> int:
        """Store ``payload`` (evicting KNHK's least recently used entries past the budget); the new total of
        bytes held, or -1 when the value alone exceeds the budget (then nothing is stored)."""
        value = self._tag(key, payload) + payload
        return int(self._call(lambda: self._put(keys=[key, self.INDEX, self.SIZES, self.TOTAL],
                                                args=[value, self.ttl_s, self.max_bytes, time.time()])))

    def bytes_held(self) -> int:
        """Bytes KNHK's cache currently charges to its Redis budget."""
        return int(self._call(lambda: self.client.get(self.TOTAL)) or 0)

    def ping(self) -> bool:
        """Whether Redis answers now (at most one timeout; an answer half-opens an open breaker)."""
        return probe_redis(self.client.ping)


class DerivedCache:
    """L1 → L2 → L3 lookups of derived results, with their per-layer counters."""

    def __init__(self, l1_bytes: int, l2: RedisLayer | None = None) -> None:
        self.l1 = ByteLRU(l1_bytes)
        self.l2 = l2

    def get(self, kind: str, key: str, load: Callable[[], T], *, codec: Codec[T] | None = None,
            size: Callable[[T], int] | None = None) -> T:
        """The result named ``kind``/``key``: from L1, else L2 (when a ``codec`` says how to store it), else
        ``load()`` (stored back into both). ``size`` estimates an in-memory value's bytes for L1 (default: its
        encoded length)."""
        name = f"{kind}:{key}"
        found, value = self.l1.get(name)
        if found:
            CACHE_REQUESTS.labels("l1", "hit").inc()
            return cast(T, value)
        CACHE_REQUESTS.labels("l1", "miss").inc()
        encoded: bytes | None = None
        l2 = self.l2 if codec is not None else None
        if l2 is not None:
            try:
                encoded = l2.get(PREFIX + name)
                CACHE_REQUESTS.labels("l2", "miss" if encoded is None else "hit").inc()
            except RedisUnavailable:
                CACHE_REQUESTS.labels("l2", "error").inc()
                l2 = None  # one failed call per lookup at most: do not store back either
            if encoded is not None and codec is not None:
                result = codec.decode(encoded)
                self.l1.put(name, result, size(result) if size is not None else len(encoded))
                return result
        CACHE_REQUESTS.labels("l3", "load").inc()
        result = load()
        if codec is not None:
            encoded = codec.encode(result)
            if l2 is not None:
                with contextlib.suppress(RedisUnavailable):  # counted on the next lookup; L1 holds the result
                    l2.put(PREFIX + name, encoded)
        self.l1.put(name, result, size(result) if size is not None else len(encoded or b"") or 1)
        return result

    def peek(self, kind: str, key: str) -> object | None:
        """An L1 entry without loading (``None`` when absent); not counted."""
        found, value = self.l1.get(f"{kind}:{key}")
        return value if found else None

    def forget(self, kind: str, key: str) -> None:
        """Drop an L1 entry (e.g. a snapshot whose content was collected)."""
        self.l1.discard(f"{kind}:{key}")

    def remember(self, kind: str, key: str, value: object, size: int) -> None:
        """Put a result the caller already holds into L1 (e.g. a snapshot just stored)."""
        self.l1.put(f"{kind}:{key}", value, size)
