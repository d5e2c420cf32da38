"""Ledger append throughput (SPEC §12): batched, one signature per entry, durable, on SQLite and PostgreSQL.

For each backend it appends N entries (default 50,000) through the real ledger, twice: from one thread with
``append_many``, and from 8 threads at once (each calling ``append_many`` with chunks of 250). The baseline,
measured in the same run, is the raw cost of the same rows: the same payload bytes, signed with the same
key (one Ed25519 signature per entry), their ids hashed, and inserted with ``executemany`` in transactions
of the same batch size (the sequencer's ``max_batch``), with the same durability settings and no ledger
logic (no sequencing, chaining, Merkle nodes or checkpoints).

Targets: ≥ 10,000 entries/s and ≥ 0.5 × the baseline.

    .venv/bin/python bench/bench_ledger_append.py [--entries 50000] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.proof.entry import Entry, EntryDraft
from knhk.proof.signing import SigningKey
from knhk.storage import schema
from knhk.storage.database import Database

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MAX_BATCH = 2000


def drafts(n: int, offset: int = 0) -> list[EntryDraft]:
    return [EntryDraft(log="receipts", kind="bench.appended", sector="finance", subject=f"sub_{i:032x}",
                       reason="benchmark", evidence=[f"obs-{i}"],
                       data={"i": i + offset, "detector": "rate", "window_s": 60, "observed": i % 97})
            for i in range(n)]


class Scratch:
    """Scratch databases, dropped afterwards."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="knhk-bench-"))
        self.pg: list[str] = []

    def url(self, backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.dir / f'{uuid.uuid4().hex[:8]}.db'}"
        name = f"knhk_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.pg.append(name)
        return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"

    def close(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in self.pg:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.dir, ignore_errors=True)


def open_runtime(url: str, data_dir: Path) -> Runtime:
    settings = Settings(data_dir=data_dir, database_url=url, db_pool_min=2, db_pool_max=16,
                        sequencer_max_batch=MAX_BATCH, checkpoint_every_entries=10_000,
                        checkpoint_every_seconds=60)
    return Runtime.open(settings, install_packs=False)


def ledger_single(url: str, data_dir: Path, n: int) -> tuple[float, list[Entry], SigningKey]:
    rt = open_runtime(url, data_dir)
    try:
        batch = drafts(n)
        rt.ledger.append(EntryDraft(log="receipts", kind="bench.warmed"))
        start = time.perf_counter()
        entries = rt.ledger.append_many(batch)
        elapsed = time.perf_counter() - start
        key_id = rt.keyring.active_key_id()
        assert key_id is not None
        return n / elapsed, entries, rt.keyring.signing_key(key_id)
    finally:
        rt.close()


def ledger_threads(url: str, data_dir: Path, n: int, threads: int = 8, chunk: int = 250) -> float:
    rt = open_runtime(url, data_dir)
    try:
        per_thread = n // threads
        work = [drafts(per_thread, t * per_thread) for t in range(threads)]
        rt.ledger.append(EntryDraft(log="receipts", kind="bench.warmed"))
        barrier = threading.Barrier(threads + 1)

        def run(items: list[EntryDraft]) -> None:
            barrier.wait()
            for i in range(0, len(items), chunk):
                rt.ledger.append_many(items[i:i + chunk])

        pool = [threading.Thread(target=run, args=(w,)) for w in work]
        for th in pool:
            th.start()
        barrier.wait()
        start = time.perf_counter()
        for th in pool:
            th.join()
        elapsed = time.perf_counter() - start
        assert rt.ledger.verify("receipts").ok
        return per_thread * threads / elapsed
    finally:
        rt.close()


INSERT = ("INSERT INTO ledger_entries (log, seq, id, ts_us, kind, sector, subject, key_id, payload, sig) "
          "VALUES (?,?,?,?,?,?,?,?,?,?)")


def raw_baseline(url: str, entries: list[Entry], key: SigningKey) -> float:
    """The same payload bytes, signed and hashed, inserted with executemany in batches: no ledger logic."""
    db = Database(url, pool_min=1, pool_max=2)
    schema.migrate(db)  # the same table, the same durability settings
    db.close()
    rows_src = [(e.payload, e.ts_us) for e in entries]
    start = time.perf_counter()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for b in range(0, len(rows_src), MAX_BATCH):
            rows = [("receipts", b + i, hashlib.sha256(p).hexdigest(), ts, "bench.appended", "finance", None,
                     key.key_id, p, key.sign(p)) for i, (p, ts) in enumerate(rows_src[b:b + MAX_BATCH])]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            for b in range(0, len(rows_src), MAX_BATCH):
                batch: list[Any] = [("receipts", b + i, hashlib.sha256(p).hexdigest(), ts, "bench.appended",
                                    "finance", None, key.key_id, p, key.sign(p))
                                   for i, (p, ts) in enumerate(rows_src[b:b + MAX_BATCH])]
                with pg.transaction(), pg.cursor() as cur:
                    cur.executemany(INSERT.replace("?", "%s"), batch)
    return len(rows_src) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    scratch = Scratch()
    ok = True
    try:
        for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
            single, entries, key = ledger_single(scratch.url(backend), scratch.dir / f"data-{backend}", args.entries)
            threaded = ledger_threads(scratch.url(backend), scratch.dir / f"data-{backend}-t", args.entries)
            base = raw_baseline(scratch.url(backend), entries, key)
            for label, rate in (("append_many, 1 thread", single), ("append_many, 8 threads", threaded)):
                ratio = rate / base
                good = rate >= 10_000 and ratio >= 0.5
                ok &= good
                print(f"{backend:10s} {label:24s} {rate:10,.0f} entries/s   baseline {base:10,.0f} entries/s   "
                      f"ratio {ratio:5.2f}   {'OK' if good else 'MISSED'} (target ≥ 10,000/s and ≥ 0.50)")
    finally:
        scratch.close()
    print("all targets met" if ok else "some targets missed")


if __name__ == "__main__":
    main()
