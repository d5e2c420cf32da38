"""The last-seen fallback of reads during a database outage (SPEC §11, the seed's "fallback to cached data").

A read wrapped in :meth:`LastSeen.read` remembers its answer (an LRU of ``KNHK_STALE_READ_ENTRIES`` per
process). When the database is unavailable (:class:`~knhk.errors.DependencyUnavailableError`: down, hung, its
circuit breaker open, its pool exhausted) and the same read was answered before, the remembered answer is
returned instead of the error and the request is *marked stale*: the service answers it with the header
``X-KNHK-Stale: true`` (and ``Cache-Control: no-store``), so a stale answer is never presented as fresh, and
counted in ``knhk_stale_reads_total{kind}``. A read never seen before still fails with the 503.

Marking works across the thread a synchronous route runs in: :func:`tracking` (the service's middleware) puts a
fresh holder into a context variable before the route is called; the copied context of the route's thread
shares that holder, :func:`mark` records into it, and the middleware reads it when the response starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar, cast

import cachetools

from knhk.errors import DependencyUnavailableError
from knhk.ops.telemetry.metrics import STALE_READS

log = logging.getLogger("knhk.stale")

T = TypeVar("T")
_MARKS: ContextVar[list[str] | None] = ContextVar("knhk_stale_marks", default=None)
_MISSING = object()
_LOG_EVERY_S = 10.0


@contextmanager
def tracking() -> Iterator[list[str]]:
    """Collect the stale marks of the block (and of threads started with its context): a list of kinds."""
    holder: list[str] = []
    token = _MARKS.set(holder)
    try:
        yield holder
    finally:
        _MARKS.reset(token)


def mark(kind: str) -> None:
    """Record that the current request was answered (partly) from the last-seen fallback."""
    holder = _MARKS.get()
    if holder is not None:
        holder.append(kind)


class LastSeen:
    """An LRU of read answers, used only while the database cannot answer them."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lru: cachetools.LRUCache[str, object] = cachetools.LRUCache(maxsize=max(1, max_entries))
        self._lock = threading.Lock()
        self._logged: dict[str, float] = {}

    def read(self, kind: str, key: str, load: Callable[[], T]) -> T:
        """``load()``, remembered under ``kind``/``key``; on a database outage the last answer, marked stale
        (the outage's error again when there is none)."""
        name = f"{kind}:{key}"
        try:
            value = load()
        except DependencyUnavailableError as exc:
            if self.max_entries <= 0:
                raise
            with self._lock:
                found = self._lru.get(name, _MISSING)
            if found is _MISSING:
                raise
            mark(kind)
            STALE_READS.labels(kind).inc()
            self._log(kind, exc)
            return cast(T, found)
        if self.max_entries > 0:
            with self._lock:
                self._lru[name] = value
        return value

    def _log(self, kind: str, exc: DependencyUnavailableError) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._logged.get(kind, -_LOG_EVERY_S) < _LOG_EVERY_S:
                return
            self._logged[kind] = now
        log.warning("serving last-seen %s reads marked stale (X-KNHK-Stale): %s", kind, exc.message,
                    extra={"stale_kind": kind})


__all__ = ["LastSeen", "mark", "tracking"]
