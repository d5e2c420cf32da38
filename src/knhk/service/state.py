"""The service's per-process state: the runtime, identity, rate limits, ingest auditing, the scheduler."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from knhk.config import Settings
from knhk.errors import RateLimitedError
from knhk.runtime import Runtime

if TYPE_CHECKING:
    from knhk.service.auth_audit import AuthFailureAudit

log = logging.getLogger("knhk.service")


class RateLimiter:
    """Fixed one-minute windows per principal; Redis when configured and reachable, else this process."""

    def __init__(self, per_minute: int, redis_url: str | None) -> None:
        self.per_minute = per_minute
        self._local: dict[tuple[str, int], int] = defaultdict(int)
        self._lock = threading.Lock()
        self.redis: Any = None
        self.redis_ok = False
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=0.2, socket_connect_timeout=0.2)

    def check(self, key: str) -> None:
        minute = int(time.time() // 60)
        count = None
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline()
                name = f"knhk:rl:{key}:{minute}"
                pipe.incr(name)
                pipe.expire(name, 120)
                count = int(pipe.execute()[0])
                self.redis_ok = True
            except Exception:
                self.redis_ok = False
        if count is None:
            with self._lock:
                self._local[(key, minute)] += 1
                count = self._local[(key, minute)]
                if len(self._local) > 100_000:
                    for k in [k for k in self._local if k[1] < minute]:
                        del self._local[k]
        if count > self.per_minute:
            raise RateLimitedError(f"more than {self.per_minute} requests a minute; slow down",
                                   retry_after=max(1, 60 - int(time.time() % 60)))

    def ping(self) -> bool | None:
        if self.redis is None:
            return None
        try:
            self.redis_ok = bool(self.redis.ping())
        except Exception:
            self.redis_ok = False
        return self.redis_ok


class IngestAudit:
    """Audits ingestion aggregated per client per minute (SPEC §9), not per observation."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._counts: dict[tuple[str, int, str], int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, identity: str, sector: str, n: int) -> None:
        with self._lock:
            self._counts[(identity, int(time.time() // 60), sector)] += n

    def flush(self, *, everything: bool = False) -> int:
        now_minute = int(time.time() // 60)
        with self._lock:
            due = {k: v for k, v in self._counts.items() if everything or k[1] < now_minute}
            for k in due:
                del self._counts[k]
        for (identity, minute, sector), count in sorted(due.items(), key=lambda kv: kv[0][1]):
            self.runtime.audit.record(identity, "observations.ingested", f"sector/{sector}", "success",
                                      sector=sector, metadata={"count": str(count), "minute": str(minute * 60)})
        return len(due)


@dataclass
class ServiceState:
    settings: Settings
    runtime: Runtime
    auth: Any
    limiter: RateLimiter
    ingest_audit: IngestAudit
    auth_audit: AuthFailureAudit
    started: float = field(default_factory=time.time)
    verify_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
