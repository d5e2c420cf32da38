"""Sequencer and loop-lease failover between two ``knhk serve`` replicas over one PostgreSQL database.

Loop lease: while both replicas run scheduled cycles, the one seen holding a sector's cycle lease is
SIGKILLed mid-cycle; the other runs that sector's cycles again within the lease TTL (the lease is renewed by
its holder's heartbeat, so it lapses one TTL after the holder dies, not after the longest possible cycle).

Sequencer: under receipt-heavy ingest through both replicas (every observation violates a guard, so each
request appends receipts), the replica holding the ledger's advisory lock (``pg_locks``, by application
name; frozen with SIGSTOP and seen still holding it, so it certainly dies inside its batch transaction) is
SIGKILLed; the other takes the sequencer and acknowledges
receipt-bearing writes again within a bounded time. Afterwards: every acknowledged observation and receipt
is stored, both logs verify (so no fork and no gap: seq contiguous, one parent chain, every checkpoint
consistent), and no two cycles of a sector overlapped.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from drill import Load, check_store, replica_env, start_replicas, stop_replicas

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.identity.local import LocalIssuer
from knhk.ledger.sequencer import lock_name
from knhk.storage.database import lock_key

# lease take-over time bound: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial

LEASE_TTL_S = 3.0
SEQUENCER_TAKEOVER_BOUND_S = 10.0


def _lock_holder(conn: psycopg.Connection[tuple[object, ...]], key: int) -> str | None:
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
    return None if row is None else str(row[0])


def _cycle_lease(conn: psycopg.Connection[tuple[object, ...]], pids: dict[int, str]) -> tuple[str, str] | None:
    now_us = int(time.time() * 1_000_000)
    for name, holder in conn.execute("SELECT name, holder FROM leases WHERE name LIKE 'knhk.cycle.%%' "
                                     "AND expires_us > %s", (now_us,)):
        pid = int(str(holder).split(":")[1])
        if pid in pids:
            return str(name), pids[pid]
    return None


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_killed_lease_holder_and_sequencer_holder_are_taken_over(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, db_pool_min=1, db_pool_max=2)
    Runtime.open(settings).close()
    token = LocalIssuer.from_settings(settings).mint(["ingestor"], subject="gateway").token
    env = {**replica_env(pg_url, settings.data_dir), "KNHK_CYCLE_INTERVAL_S": "1",
           "KNHK_LEASE_TTL_S": str(LEASE_TTL_S)}
    names = ["knhk-a", "knhk-b"]
    urls, procs = start_replicas(env, 2, names)
    by_name = {n: (u, p) for n, u, p in zip(names, urls, procs, strict=True)}
    loads: list[Load] = []
    figures: dict[str, float] = {}
    watch = psycopg.connect(pg_url, autocommit=True)
    try:
        # -- a loop lease holder dies mid-cycle ------------------------------------------------------
        loads.append(Load(urls, token, threads=4, batch=10, violating_every=1, prefix="p1-"))
        loads[-1].start()
        pids = {p.pid: n for n, (_u, p) in by_name.items()}
        deadline = time.monotonic() + 60
        while (held := _cycle_lease(watch, pids)) is None:
            assert time.monotonic() < deadline, "no replica was ever seen holding a cycle lease"
            time.sleep(0.005)
        lease, holder = held
        sector = lease.removeprefix("knhk.cycle.")
        killed_us = int(time.time() * 1_000_000)
        killed_at = time.monotonic()
        _kill(by_name[holder][1])
        survivor = next(n for n in names if n != holder)
        while True:
            row = watch.execute("SELECT count(*) FROM cycles WHERE sector = %s AND started_us > %s",
                                (sector, killed_us)).fetchone()
            if row and row[0]:
                break
            assert time.monotonic() - killed_at < LEASE_TTL_S + 15, f"{survivor} never took over {lease}"
            time.sleep(0.05)
        figures["lease_takeover_s"] = time.monotonic() - killed_at
        loads[-1].finish()

        # -- a new replica replaces the dead one; the sequencer holder then dies inside its batch ------
        replacement = f"{holder}-2"
        new_urls, new_procs = start_replicas(env, 1, [replacement])
        by_name[replacement] = (new_urls[0], new_procs[0])
        live = [survivor, replacement]
        loads.append(Load([by_name[n][0] for n in live], token, threads=4, batch=10, violating_every=1,
                          prefix="p2-"))
        loads[-1].start()
        time.sleep(1.0)
        key = lock_key(lock_name("all"))
        deadline = time.monotonic() + 60
        while True:  # freeze the replica seen holding the lock; if it still holds it frozen, it dies holding it
            seq_holder = _lock_holder(watch, key)
            if seq_holder in live:
                os.kill(by_name[seq_holder][1].pid, signal.SIGSTOP)
                if _lock_holder(watch, key) == seq_holder:
                    break
                os.kill(by_name[seq_holder][1].pid, signal.SIGCONT)
            assert time.monotonic() < deadline, "no replica was ever seen holding the sequencer lock"
        killed_at = time.monotonic()
        _kill(by_name[seq_holder][1])
        other = live.index(next(n for n in live if n != seq_holder))
        while True:
            with loads[-1]._lock:
                took = [o for o in loads[-1].outcomes if o.ok and o.receipts and o.sent > killed_at
                        and o.replica == other]
            if took:
                figures["sequencer_takeover_s"] = min(o.done for o in took) - killed_at
                break
            assert time.monotonic() - killed_at < SEQUENCER_TAKEOVER_BOUND_S, \
                f"{live[other]} did not take the sequencer over"
            time.sleep(0.02)
        time.sleep(1.0)
    finally:
        for load in loads:
            load.finish()
        stop_replicas([p for _u, p in by_name.values() if p.poll() is None])
        watch.close()

    print(f"\n== replica failover: lease {lease} taken over in {figures['lease_takeover_s']:.2f} s "
          f"(TTL {LEASE_TTL_S} s); sequencer taken over in {figures['sequencer_takeover_s']:.3f} s")
    assert figures["lease_takeover_s"] < LEASE_TTL_S + 10
    stored = check_store(pg_url, [o for load in loads for o in load.outcomes])
    assert stored["lost_observations"] == 0
    assert stored["lost_receipts"] == 0
    assert stored["acknowledged_receipts"] > 100
    assert stored["half_written_batches"] == []
    with Runtime.open(settings) as rt:
        for log in ("receipts", "audit"):
            report = rt.ledger.verify(log)
            assert report.ok, report.to_json()
        with rt.db.connection() as conn:
            for sector in ("finance", "healthcare", "logistics", "manufacturing"):
                spans = conn.fetchall("SELECT started_us, finished_us FROM cycles WHERE sector=? ORDER BY started_us",
                                      (sector,))
                for (_s1, f1), (s2, _f2) in itertools.pairwise(spans):
                    assert s2 >= f1, f"two cycles of {sector} overlapped"
