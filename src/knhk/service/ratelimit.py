"""Rate limits per principal (SPEC §10: 429 with ``Retry-After``), shared by every worker and replica.

A one-minute moving window (the ``limits`` library's ``MovingWindowRateLimiter``) counted in Redis when
``KNHK_REDIS_URL`` is set, so ``KNHK_RATE_LIMIT_PER_MINUTE`` holds for the whole service, not per process. The
Redis key of a principal is a keyed hash of its identity (HMAC-SHA-256 under the installation's secret, see
:meth:`knhk.audit.subjects.Subjects.keyed_hash`), never the identity.

Without Redis — not configured, down, hung, or its circuit breaker open — each worker counts alone, in
memory, with its share of the limit (``limit // KNHK_WORKERS``, at least 1), so all workers of a process
together still admit at most the limit a minute. When Redis is lost mid-window, a worker's local window is
first charged with its share of the count Redis last reported for that principal, and when Redis answers
again the requests admitted locally are charged back to the shared window, so a loss or a flap does not
hand anyone a fresh minute (measured figures in ``docs/reliability.md``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import cachetools
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from knhk.errors import RateLimitedError
from knhk.ops.cache import REDIS_BREAKER, RedisUnavailable, guarded_redis, probe_redis, redis_options

log = logging.getLogger("knhk.service")

_KEYS = 100_000  # principals remembered per process (last shared count, local admissions)


class RateLimiter:
    """Requests per principal per minute: shared through Redis, each worker's share without it."""

    def __init__(self, per_minute: int, redis_url: str | None, *, workers: int = 1,
                 keyed: Callable[[str], str] = lambda identity: identity, timeout_s: float = 0.05) -> None:
        self.per_minute = per_minute
        self.workers = max(1, workers)
        self.item = RateLimitItemPerMinute(per_minute)
        self.local_item = RateLimitItemPerMinute(max(1, per_minute // self.workers))
        self._keyed = keyed
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self._storage: RedisStorage | None = None
        if redis_url:
            storage = RedisStorage(redis_url, key_prefix="{knhk}:rl", **redis_options(timeout_s))
            self._shared, self._storage = MovingWindowRateLimiter(storage), storage
            REDIS_BREAKER.recover_with(lambda: storage.get_connection().ping())
        self._lock = threading.Lock()
        self._seen: cachetools.TTLCache[str, int] = cachetools.TTLCache(_KEYS, 60)  # last shared count
        self._owed: cachetools.TTLCache[str, int] = cachetools.TTLCache(_KEYS, 60)  # admitted locally
        self.redis_ok: bool | None = None if redis_url is None else True

    def check(self, identity: str) -> None:
        """Count one request of ``identity``; :class:`RateLimitedError` (429, ``Retry-After``) past the limit."""
        key = self._keyed(identity)
        if self._shared is not None:
            try:
                allowed, retry = guarded_redis(lambda: self._shared_hit(key))
                self.redis_ok = True
            except RedisUnavailable as exc:
                if self.redis_ok:
                    log.warning("rate limits fall back to this worker's share (%d a minute): Redis: %s",
                                self.local_item.amount, exc)
                self.redis_ok = False
                allowed, retry = self._local_hit(key)
        else:
            allowed, retry = self._local_hit(key)
        if not allowed:
            raise RateLimitedError(f"more than {self.per_minute} requests a minute; slow down", retry_after=retry)

    def _shared_hit(self, key: str) -> tuple[bool, int]:
        assert self._shared is not None
        with self._lock:
            owed = self._owed.pop(key, 0)
        if owed:  # charge back what this worker admitted while Redis was away
            stats = self._shared.get_window_stats(self.item, key)
            if stats.remaining:
                self._shared.hit(self.item, key, cost=min(owed, stats.remaining))
        allowed = self._shared.hit(self.item, key)
        stats = self._shared.get_window_stats(self.item, key)
        with self._lock:
            self._seen[key] = self.item.amount - stats.remaining
        return allowed, _retry_after(stats.reset_time)

    def _local_hit(self, key: str) -> tuple[bool, int]:
        with self._lock:
            seen = self._seen.pop(key, 0)
            if seen:  # Redis was just lost: start from this worker's share of what it had counted
                share = min(self.local_item.amount, math.ceil(seen / self.workers))
                self._local.hit(self.local_item, key, cost=share)
            allowed = self._local.hit(self.local_item, key)
            if allowed and self._shared is not None:
                self._owed[key] = self._owed.get(key, 0) + 1
        stats = self._local.get_window_stats(self.local_item, key)
        return allowed, _retry_after(stats.reset_time)


    def ping(self) -> bool | None:
        """Whether the shared counters' Redis answers now (``None``: not configured; an answer half-opens the
        open ``redis`` circuit breaker)."""
        storage = self._storage
        if storage is None:
            return None
        self.redis_ok = probe_redis(lambda: storage.get_connection().ping())
        return self.redis_ok


def _retry_after(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))
