"""The service's per-process state: the application, the authenticator, rate limits, the scheduler."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from knhk.app.application import Application
from knhk.app.observations import IngestAudit
from knhk.config import Settings
from knhk.errors import RateLimitedError
from knhk.identity.oidc import Authenticator

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


@dataclass
class ServiceState:
    settings: Settings
    app: Application
    auth: Authenticator
    limiter: RateLimiter
    ingest_audit: IngestAudit  # the application's, flushed by the scheduler's minute job
    started: float = field(default_factory=time.time)
    verify_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
