"""Retention (SPEC §11): archiving a month of observations and verifying its archive.

Ingests N observations (default 100,000) into one month of ingest time through the real ingest path (batches of
10,000, a manual clock), then runs ``archive_observations`` (read in seq order, gzip JSON lines, signed manifest,
``observations.archived`` receipt and proof bundle, partition dropped) and ``verify_archive`` (decompress, every
unsealed row's content hash recomputed, both Merkle roots, signature, proof bundle). Prints rows/s of each step and
the archive's size per observation; the ingest rate of the same run is the baseline the archive rate is read
against.

    .venv/bin/python bench/bench_retention.py [--observations 100000] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.app.retention import verify_archive
from knhk.config import Settings
from knhk.ops.clock import ManualClock, parse_rfc3339

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MONTH = parse_rfc3339("2026-01-05T00:00:00Z")
NOW = parse_rfc3339("2026-06-01T00:00:00Z")


def run(url: str, data_dir: Path, n: int) -> dict[str, float]:
    clock = ManualClock(MONTH)
    settings = Settings(data_dir=data_dir, database_url=url, db_pool_min=1, db_pool_max=4)
    app = Application.open(settings, access=LocalAccess(), loop_clock=clock)
    try:
        start = time.perf_counter()
        for b in range(0, n, 10_000):
            app.runtime.ingestor.ingest_batch([
                {"id": f"o-{i}", "event_type": "payment.created", "sector": "finance",
                 "value": {"account_id": f"A-{i % 97}", "transaction_amount": 10 + i % 1000, "currency": "EUR"}}
                for i in range(b, min(n, b + 10_000))])
            clock.advance(60)
        ingest_s = time.perf_counter() - start
        start = time.perf_counter()
        report = app.archive_observations(local_principal("bench"), retention_days=90, now_us=NOW)
        archive_s = time.perf_counter() - start
        done = [a for a in report.archived if a.count]
        if len(done) != 1 or done[0].count != n:
            raise SystemExit(f"unexpected archive run: {report.to_json()}")
        path = Path(done[0].archive)
        start = time.perf_counter()
        verified = verify_archive(path)
        verify_s = time.perf_counter() - start
        assert verified.ok, verified.problems
        return {"ingest_rows_s": n / ingest_s, "archive_rows_s": n / archive_s, "archive_s": archive_s,
                "verify_rows_s": n / verify_s, "verify_s": verify_s, "bytes_per_row": path.stat().st_size / n}
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        with tempfile.TemporaryDirectory(prefix="knhk-bench-retention-") as tmp:
            if backend == "sqlite":
                result = run(f"sqlite:///{tmp}/knhk.db", Path(tmp) / "data", args.observations)
            else:
                name = f"knhk_bench_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                try:
                    result = run(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}", Path(tmp) / "data", args.observations)
                finally:
                    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"{backend}: {args.observations} observations — ingest {result['ingest_rows_s']:,.0f}/s; archive "
              f"{result['archive_s']:.1f} s ({result['archive_rows_s']:,.0f}/s, ratio to ingest "
              f"{result['archive_rows_s'] / result['ingest_rows_s']:.2f}); verify {result['verify_s']:.1f} s "
              f"({result['verify_rows_s']:,.0f}/s); archive {result['bytes_per_row']:.1f} bytes/observation")


if __name__ == "__main__":
    main()
