"""What monthly partitioning (migration 0015) costs the PostgreSQL insert path: the store's set-based INSERT
(``json_to_recordset``, batches of 5,000) into the schema before 0015 (one table, a unique id index) and after it
(range partitions on ``received_us``, ids claimed in ``observation_ids`` by a statement trigger), measured in one
run with the batches interleaved, the former as the baseline.

    .venv/bin/python bench/bench_partitioned_insert.py [--batches 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import orjson
import psycopg

from knhk.observations import store
from knhk.storage import schema

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 5000


def _database(up_to: int) -> str:
    name = f"knhk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        for m in schema.available("postgresql"):
            if m.version <= up_to:
                conn.execute(m.sql.encode())
    return url


def rates(batches: int) -> tuple[float, float]:
    """Rows/s before and after 0015, batches interleaved (A, B, A, B, …) so both see the same machine load."""
    urls = [_database(14), _database(15)]
    times: list[list[float]] = [[], []]
    now = time.time_ns() // 1000
    try:
        conns = [psycopg.connect(u) for u in urls]
        try:
            for b in range(batches):
                doc = orjson.dumps([dict(zip(store._NAMES, (f"{b}-{i}", "finance", "payment.created", now, now,
                                                             '{"a":1}', "{}", "h" * 64, True, "[]", False, True,
                                                             False, None), strict=True))
                                    for i in range(BATCH)]).decode()
                for k, conn in enumerate(conns):
                    start = time.perf_counter()
                    conn.execute(store._INSERT_PG.replace("?", "%s"), (doc,)).fetchall()
                    conn.commit()
                    times[k].append(time.perf_counter() - start)
        finally:
            for conn in conns:
                conn.close()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for u in urls:
                conn.execute(f'DROP DATABASE IF EXISTS "{u.rsplit("/", 1)[1]}" WITH (FORCE)')
    return BATCH / statistics.median(times[0]), BATCH / statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    before, after = rates(args.batches)
    print(f"before 0015: {before:,.0f} rows/s; partitioned: {after:,.0f} rows/s; ratio {after / before:.2f} "
          f"(median of {args.batches} batches of {BATCH})")


if __name__ == "__main__":
    main()
