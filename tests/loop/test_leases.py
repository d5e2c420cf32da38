"""Loop leases on both backends: a held lease keeps out every other holder — another replica and another
thread of the same process (a scheduled cycle and a requested one) — is renewed by its heartbeat past its
TTL while the work runs, and is free the moment the block ends."""

from __future__ import annotations

import threading
import time

import pytest

from knhk.errors import ConflictError
from knhk.loop.leases import Leases
from knhk.storage.database import Database


def test_a_held_lease_excludes_other_threads_and_replicas_and_outlives_its_ttl(db: Database) -> None:
    here = Leases(db, ttl_s=1.0)
    other_replica = Leases(db, holder="elsewhere:1:abcd", ttl_s=1.0)
    entered = threading.Event()
    leave = threading.Event()
    inside: list[str] = []

    def hold_in_a_thread() -> None:
        with here.hold("knhk.cycle.finance", what="a cycle of finance"):
            inside.append("thread")
            entered.set()
            leave.wait(10)

    worker = threading.Thread(target=hold_in_a_thread)
    worker.start()
    try:
        assert entered.wait(10)
        with pytest.raises(ConflictError, match="a cycle of finance is already running elsewhere"), \
                here.hold("knhk.cycle.finance", what="a cycle of finance"):
            inside.append("same process")
        time.sleep(1.6)  # beyond the TTL: only the heartbeat keeps the lease
        assert not other_replica.try_acquire("knhk.cycle.finance", 1.0)
        with pytest.raises(ConflictError), other_replica.hold("knhk.cycle.finance", what="a cycle of finance"):
            inside.append("other replica")
    finally:
        leave.set()
        worker.join()
    assert inside == ["thread"]
    with other_replica.hold("knhk.cycle.finance", what="a cycle of finance"):  # released at once, not at expiry
        inside.append("other replica")
    assert inside == ["thread", "other replica"]
