"""Migrations that cannot run in a transaction (``CREATE INDEX CONCURRENTLY``), marked ``-- knhk:no-transaction``:
applied in order after the transactional ones before them, without blocking the service's writes, safe to
re-run after a build that failed halfway, and refused at load when they could not be re-run."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

import knhk.storage
from knhk.errors import ConfigurationError, DependencyUnavailableError
from knhk.storage import schema
from knhk.storage.database import Database

SHIPPED = Path(knhk.storage.__file__).parent / "migrations"
PROBE_TABLE = "CREATE TABLE knhk_probe (x BIGINT NOT NULL);\n"
PROBE_INDEX = ("-- knhk:no-transaction\n-- a unique index on a table the service writes to\n"
               "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS knhk_probe_x ON knhk_probe (x);\n")


def _source(tmp_path: Path, with_index: bool) -> Path:
    source = tmp_path / "migrations"
    source.mkdir(exist_ok=True)
    for item in SHIPPED.glob("*.postgresql.sql"):
        shutil.copy(item, source / item.name)
    (source / "9998_probe_table.postgresql.sql").write_text(PROBE_TABLE)
    if with_index:
        (source / "9999_probe_index.postgresql.sql").write_text(PROBE_INDEX)
    return source


def _index_valid(url: str) -> bool | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE c.relname = 'knhk_probe_x'").fetchone()
    return None if row is None else bool(row[0])


def test_a_concurrent_index_is_built_after_the_migrations_before_it(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url, pool_min=1, pool_max=2)
    try:
        applied = schema.migrate(db, source=_source(tmp_path, with_index=True))
        assert [m.version for m in applied][-2:] == [9998, 9999]
        assert [m.transactional for m in applied][-2:] == [True, False]
        assert _index_valid(pg_url) is True
        assert schema.migrate(db, source=_source(tmp_path, with_index=True)) == []
    finally:
        db.close()


def test_the_build_does_not_block_writes_of_the_running_service(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url, pool_min=1, pool_max=2)
    try:
        schema.migrate(db, source=_source(tmp_path, with_index=False))
        with psycopg.connect(pg_url) as open_tx, psycopg.connect(pg_url, autocommit=True) as writer:
            open_tx.execute("INSERT INTO knhk_probe VALUES (1)")  # a service transaction still open
            outcome: list[object] = []
            migrator = threading.Thread(target=lambda: outcome.append(
                schema.migrate(db, lock_timeout_ms=60_000, source=_source(tmp_path, with_index=True))))
            migrator.start()
            # the build now waits for the open transaction; a plain CREATE INDEX would hold a SHARE lock
            # request that every later INSERT queues behind, CONCURRENTLY lets them through
            writer.execute("SET statement_timeout = '5s'")
            for x in range(2, 12):
                writer.execute("INSERT INTO knhk_probe VALUES (%s)", (x,))
            assert migrator.is_alive(), "the build did not wait for the open transaction"
            open_tx.commit()
            migrator.join(60)
        assert [m.version for m in outcome[0]] == [9999]  # type: ignore[attr-defined]
        assert _index_valid(pg_url) is True
    finally:
        db.close()


def test_a_build_that_fails_halfway_is_not_recorded_and_a_rerun_finishes_it(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url, pool_min=1, pool_max=2)
    try:
        schema.migrate(db, source=_source(tmp_path, with_index=False))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("INSERT INTO knhk_probe VALUES (7), (7)")
        with pytest.raises(DependencyUnavailableError) as failed:
            schema.migrate(db, source=_source(tmp_path, with_index=True))
        message = str(failed.value)
        assert "9999_probe_index" in message
        assert "statement 1 of 1" in message
        assert "run `knhk db migrate` again" in message
        assert _index_valid(pg_url) is False  # what the failed build left behind
        assert 9999 not in schema.applied(db)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE knhk_probe SET x = 8 WHERE ctid = (SELECT min(ctid) FROM knhk_probe)")
        assert [m.version for m in schema.migrate(db, source=_source(tmp_path, with_index=True))] == [9999]
        assert _index_valid(pg_url) is True
    finally:
        db.close()


@pytest.mark.parametrize(("sql", "why"), [
    ("-- knhk:no-transaction\nCREATE INDEX CONCURRENTLY knhk_probe_x ON knhk_probe (x);\n", "IF NOT EXISTS"),
    ("-- knhk:no-transaction\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n", "dollar-quoted"),
])
def test_a_no_transaction_migration_that_could_not_be_rerun_is_refused(tmp_path: Path, sql: str, why: str) -> None:
    (tmp_path / "0001_bad.postgresql.sql").write_text(sql)
    with pytest.raises(ConfigurationError, match=why):
        schema.available("postgresql", tmp_path)


def test_the_marker_is_refused_on_sqlite(tmp_path: Path) -> None:
    (tmp_path / "0001_bad.sqlite.sql").write_text("-- knhk:no-transaction\nCREATE INDEX i ON t (x);\n")
    with pytest.raises(ConfigurationError, match="PostgreSQL only"):
        schema.available("sqlite", tmp_path)
