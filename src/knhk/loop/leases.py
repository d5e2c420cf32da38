"""Leases for loop jobs: run a sector's cycle (or the verifier, or the checkpoint issuer) in at most one
process at a time, across replicas, the ``leases`` table (:mod:`knhk.loop.store`)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from knhk.errors import ConflictError
from knhk.loop import store
from knhk.ops.clock import SYSTEM_CLOCK, Clock
from knhk.storage.database import Database

HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK, holder: str = HOLDER) -> None:
        self.db = db
        self.clock = clock
        self.holder = holder

    def try_acquire(self, name: str, ttl_s: float) -> bool:
        with self.db.transaction() as conn:
            return store.acquire_lease(conn, name, self.holder, self.clock.now_us(), int(ttl_s * 1_000_000))

    def release(self, name: str) -> None:
        with self.db.transaction() as conn:
            store.release_lease(conn, name, self.holder)

    @contextmanager
    def hold(self, name: str, ttl_s: float, *, what: str) -> Iterator[None]:
        """Hold the lease for the block, or raise ConflictError when another process holds it."""
        if not self.try_acquire(name, ttl_s):
            raise ConflictError(f"{what} is already running elsewhere; try again shortly")
        try:
            yield
        finally:
            self.release(name)
