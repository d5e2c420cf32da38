"""Observations partitioned by month of ingest (migration 0015, knhk.observations.partitions), both backends.

Proves: the migration converts a store holding rows of the previous schema (every row, its seq and content kept,
ids claimed in observation_ids, the sequence continued after the highest seq); ids stay unique across partitions;
the row-level UPDATE/DELETE refusals stay; partitions of the coming months exist after startup, and a row of a
month with no partition never fails its ingest (PostgreSQL: the default partition takes it).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.observations import partitions
from knhk.ops.clock import ManualClock
from knhk.storage import schema
from knhk.storage.database import Database

OLD = 1_700_000_000_000_000  # 2023-11-14
DAY_US = 86_400 * 1_000_000
_COLS = ("id, sector, event_type, ts_us, received_us, value, metadata, content_hash, conforming, issues, skewed,"
         " client_id, ts_defaulted, client")


def _apply_before_0015(url: str) -> None:
    """The schema as the previous release left it (migrations 1..14, with their bookkeeping)."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    older = [m for m in schema.available(dialect) if m.version < 15]
    book = ("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, digest TEXT NOT NULL,"
            " applied_us BIGINT NOT NULL)")
    if dialect == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.executescript(book + ";" + ";\n".join(m.sql for m in older))
        conn.executemany("INSERT INTO schema_migrations VALUES (?,?,?,0)",
                         [(m.version, m.name, m.digest) for m in older])
        conn.commit()
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(book)
        for m in older:
            pg.execute(m.sql.encode())
            pg.execute("INSERT INTO schema_migrations VALUES (%s,%s,%s,0)", (m.version, m.name, m.digest))


def _old_row(i: int, received_us: int) -> tuple[object, ...]:
    return (f"old-{i}", "finance", "user.login", received_us, received_us, f'{{"user":"u{i}"}}', "{}", f"h{i}",
            True, "[]", False, True, False, None)


def test_the_migration_keeps_every_row_of_the_previous_schema(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    _apply_before_0015(database_url)
    db = Database(database_url, pool_min=1, pool_max=2)
    try:
        rows = [_old_row(i, OLD + i * 20 * DAY_US) for i in range(6)]  # spread over four months
        with db.transaction() as conn:
            conn.executemany(f"INSERT INTO observations ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            before = conn.fetchall("SELECT seq, id, received_us, value, content_hash FROM observations ORDER BY seq")
        assert [m.version for m in schema.migrate(db)] == [m.version for m in schema.available(db.dialect)
                                                          if m.version >= 15]
        with db.connection() as conn:
            after = conn.fetchall("SELECT seq, id, received_us, value, content_hash FROM observations ORDER BY seq")
            claimed = conn.fetchall("SELECT id, seq, received_us FROM observation_ids ORDER BY seq")
            months = partitions.stored_months(conn)
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert [tuple(r) for r in claimed] == [(r[1], r[0], r[2]) for r in before]
        assert {"2023-11", "2023-12", "2024-01", "2024-02"} <= {m.period for m in months}
        if db.dialect == "postgresql":
            with db.connection() as conn:
                where = dict(conn.fetchall("SELECT id, tableoid::regclass::text FROM observations"))
            assert where["old-0"] == "observations_p202311"
            assert where["old-5"] == "observations_p202402"
        # the sequence goes on after the highest seq; a used id is refused, also in another month
        with db.transaction() as conn:
            conn.execute(f"INSERT INTO observations ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         _old_row(99, time.time_ns() // 1000))
            (seq,) = conn.fetchone("SELECT seq FROM observations WHERE id='old-99'") or (0,)
        assert seq == int(before[-1][0]) + 1
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), db.transaction() as conn:
            conn.execute(f"INSERT INTO observations ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         _old_row(1, time.time_ns() // 1000))
        # rows are never changed or deleted one by one
        for sql in ("DELETE FROM observations WHERE id='old-2'", "UPDATE observations SET value='{}' WHERE id='old-2'",
                    "DELETE FROM observation_ids WHERE id='old-2'"):
            with pytest.raises(Exception, match="append-only"), db.transaction() as conn:
                conn.execute(sql)
        with db.connection() as conn:
            assert conn.fetchone("SELECT COUNT(*) FROM observations") == (7,)
    finally:
        db.close()


def test_partitions_are_made_ahead_and_a_month_without_one_never_fails_ingest(settings: Settings) -> None:
    clock = ManualClock(OLD)
    rt = Runtime.open(settings, loop_clock=clock)
    try:
        with rt.db.connection() as conn:
            if rt.db.dialect == "postgresql":
                months = [m.period for m in partitions.stored_months(conn)]
                # the clock's month and the next KNHK_PARTITIONS_AHEAD (3)
                assert {"2023-11", "2023-12", "2024-01", "2024-02"} <= set(months)
        rt.ingestor.ingest_batch([{"id": "a", "sector": "finance", "event_type": "user.login",
                                   "value": {"user": "x"}}])
        # far ahead of what startup made: the ingest makes the month's partition first
        clock.set(OLD + 400 * DAY_US)
        rt.ingestor.ingest_batch([{"id": "b", "sector": "finance", "event_type": "user.login",
                                   "value": {"user": "y"}}])
        if rt.db.dialect == "postgresql":
            with rt.db.connection() as conn:
                where = dict(conn.fetchall("SELECT id, tableoid::regclass::text FROM observations"))
            assert where == {"a": "observations_p202311", "b": "observations_p202412"}
            # a partition that cannot be made (here: the keeper is told nothing, the month has none) is no
            # failure either: the row lands in the default partition
            rt.ingestor.before_store = None
            clock.set(OLD + 4000 * DAY_US)
            rt.ingestor.ingest_batch([{"id": "c", "sector": "finance", "event_type": "user.login",
                                       "value": {"user": "z"}}])
            with rt.db.connection() as conn:
                assert conn.fetchone("SELECT tableoid::regclass::text FROM observations WHERE id='c'") == (
                    "observations_default",)
                assert partitions.ensure(rt.db, OLD + 4000 * DAY_US, 1) == 1  # only the next month: its own
                # month holds rows in the default partition, which PostgreSQL would refuse to split off
        with rt.db.connection() as conn:
            assert conn.fetchone("SELECT COUNT(*) FROM observations") == (3 if rt.db.dialect == "postgresql" else 2,)
    finally:
        rt.close()


def test_months(tmp_path: Path) -> None:
    m = partitions.month_of(OLD)
    assert (m.period, m.table) == ("2023-11", "observations_p202311")
    assert partitions.month_of(m.hi_us).period == "2023-12"
    assert partitions.month_of(m.hi_us - 1) == m
    dec = partitions.month_of(OLD + 40 * DAY_US)
    assert partitions.month_of(dec.hi_us).period == "2024-01"
    assert [x.period for x in partitions.months_between(OLD, OLD + 70 * DAY_US)] == ["2023-11", "2023-12",
                                                                                     "2024-01"]
