"""Leases for loop jobs: run a sector's cycle (or the verifier, or the checkpoint issuer) in at most one
process at a time, across replicas, the ``leases`` table (:mod:`knhk.loop.store`).

A lease held for a block (:meth:`Leases.hold`) is renewed every third of its TTL by a heartbeat thread, so
the TTL can be short whatever the work takes: when the holder is killed or hangs, renewals stop and another
replica takes the work over within one TTL (``KNHK_LEASE_TTL_S``). Each hold is its own holder, so two threads
of one process (the scheduler and a request) are kept apart like two replicas. A lease taken with
:meth:`Leases.try_acquire` belongs to the process, which keeps it by renewing it (the scheduler's interval
leases).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from knhk.errors import ConflictError
from knhk.loop import store
from knhk.ops.clock import SYSTEM_CLOCK, Clock
from knhk.storage.database import Database

HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
log = logging.getLogger("knhk.loop")


class Leases:
    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK, holder: str = HOLDER, ttl_s: float = 30.0) -> None:
        self.db = db
        self.clock = clock
        self.holder = holder
        self.ttl_s = ttl_s

    def try_acquire(self, name: str, ttl_s: float, holder: str | None = None) -> bool:
        """Take or renew the lease for this process (or ``holder``); False while someone else holds it."""
        with self.db.transaction() as conn:
            return store.acquire_lease(conn, name, holder or self.holder, self.clock.now_us(),
                                       int(ttl_s * 1_000_000))

    def release(self, name: str, holder: str | None = None) -> None:
        with self.db.transaction() as conn:
            store.release_lease(conn, name, holder or self.holder)

    @contextmanager
    def hold(self, name: str, ttl_s: float | None = None, *, what: str) -> Iterator[None]:
        """Hold the lease for the block (renewed while it runs), or raise ConflictError when another process —
        or another thread of this one — holds it."""
        ttl = ttl_s or self.ttl_s
        holder = f"{self.holder}/{uuid.uuid4().hex[:8]}"  # one holder per hold: exclusive between threads too
        if not self.try_acquire(name, ttl, holder):
            raise ConflictError(f"{what} is already running elsewhere; try again shortly")
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 3):
                try:
                    if not self.try_acquire(name, ttl, holder):
                        log.error("lease %s was taken over while %s was still running here", name, what)
                        return
                except Exception as exc:  # the database is away: keep trying until the block ends
                    log.warning("renewing lease %s failed: %s", name, exc)

        heartbeat = threading.Thread(target=renew, name=f"knhk-lease-{name}", daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()
            self.release(name, holder)
