"""Zero-downtime migrations (seed §7): squawk lints every PostgreSQL migration, and the runner bounds the locks
a migration may wait for.

- Every ``*.postgresql.sql`` migration is linted by the real squawk (PyPI ``squawk-cli``) with the repository's
  ``.squawk.toml``. A finding fails the test unless it is one of the few accepted below, each with its reason
  (already-applied migrations cannot change: the migrator checks their digests, so they are fixed forward).
- The configuration still catches what breaks a running service (index without CONCURRENTLY on an existing
  table, a constraint without NOT VALID, a column type change, a NOT NULL column added to a used table).
- A migration that cannot take a table lock within ``lock_timeout`` (a long transaction of the running
  service holds it) is rolled back whole and says so; once the lock is free, it applies.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from knhk.errors import DependencyUnavailableError
from knhk.storage import schema
from knhk.storage.database import Database

ROOT = Path(__file__).resolve().parents[2]
SQUAWK = str(Path(sys.executable).with_name("squawk"))
MIGRATIONS = ROOT / "src" / "knhk" / "storage" / "migrations"

#: (file, line, rule) → why the finding is accepted. All are in migrations that shipped before squawk ran
#: (their content is frozen) and concern columns whose values are bounded by the domain.
ACCEPTED = {
    ("0001_ledger.postgresql.sql", 35, "prefer-bigint-over-smallint"):
        "ledger_nodes.level: a Merkle tree level, at most 63 for a 64-bit tree size",
    ("0003_observations.postgresql.sql", 31, "prefer-bigint-over-smallint"):
        "detector_thresholds.threshold_milli: a confidence in thousandths, 0..1000",
    ("0003_observations.postgresql.sql", 32, "prefer-bigint-over-int"):
        "detector_thresholds.accepted: people's decisions on one pattern type of one sector",
    ("0003_observations.postgresql.sql", 33, "prefer-bigint-over-int"):
        "detector_thresholds.rejected: as accepted",
    ("0004_snapshots.postgresql.sql", 59, "prefer-bigint-over-int"):
        "snapshot_history.forced: a 0/1 flag",
}


def squawk(*paths: Path) -> list[dict[str, Any]]:
    import subprocess

    done = subprocess.run([SQUAWK, "--reporter", "json", *map(str, paths)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode in (0, 1), done.stderr  # 1: findings
    findings: list[dict[str, Any]] = orjson.loads(done.stdout or "[]")
    return findings


def test_every_postgresql_migration_passes_squawk() -> None:
    files = sorted(MIGRATIONS.glob("*.postgresql.sql"))
    assert len(files) == len(schema.available("postgresql")) >= 7
    found = {(Path(f["file"]).name, f["line"], f["rule_name"]): f["message"] for f in squawk(*files)}
    unexplained = {k: v for k, v in found.items() if k not in ACCEPTED}
    assert not unexplained, f"squawk findings (fix forward in a new migration, or explain): {unexplained}"
    assert set(ACCEPTED) <= set(found), "an accepted finding no longer occurs: drop it from ACCEPTED"


def test_squawk_catches_migrations_that_would_block_the_running_service(tmp_path: Path) -> None:
    bad = tmp_path / "0099_blocking.postgresql.sql"
    bad.write_text(
        "CREATE INDEX observations_client ON observations (client);\n"
        "ALTER TABLE proposals ADD CONSTRAINT proposals_cost_positive CHECK (cost >= 0);\n"
        "ALTER TABLE cycles ALTER COLUMN sector TYPE VARCHAR(40);\n"
        "ALTER TABLE observations ADD COLUMN tenant TEXT NOT NULL;\n")
    rules = {f["rule_name"] for f in squawk(bad)}
    assert {"require-concurrent-index-creation", "constraint-missing-not-valid", "changing-column-type",
            "adding-required-field"} <= rules, rules
    good = tmp_path / "0099_compatible.postgresql.sql"
    good.write_text(  # what those changes look like done the backward-compatible way (one per migration)
        "ALTER TABLE proposals ADD CONSTRAINT proposals_cost_positive CHECK (cost >= 0) NOT VALID;\n"
        "ALTER TABLE observations ADD COLUMN tenant TEXT;\n")
    assert squawk(good) == []


def _migrate_to(url: str, version: int) -> None:
    """Apply the migrations up to ``version`` as the runner does (the state of the previous release)."""
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute(schema._BOOKKEEPING)
        for m in schema.available("postgresql"):
            if m.version <= version:
                conn.execute(m.sql.encode())
                conn.execute("INSERT INTO schema_migrations VALUES (%s,%s,%s,0)", (m.version, m.name, m.digest))
        conn.commit()


def test_a_migration_blocked_by_a_long_transaction_is_rolled_back_whole(pg_url: str) -> None:
    newest = schema.available("postgresql")[-1]
    _migrate_to(pg_url, newest.version - 1)
    db = Database(pg_url, pool_min=1, pool_max=2)
    holder = psycopg.connect(pg_url, autocommit=False)
    try:
        holder.execute("LOCK TABLE schema_migrations IN SHARE MODE")  # a long transaction: reads pass, writes wait
        with pytest.raises(DependencyUnavailableError, match="rolled back") as refused:
            schema.migrate(db, lock_timeout_ms=200)
        assert f"migration {newest.version:04d}_{newest.name} was rolled back" in str(refused.value)
        holder.rollback()
        assert [m.version for m in schema.pending(db)] == [newest.version]  # nothing half-applied

        holder.execute("LOCK TABLE schema_migrations IN SHARE MODE")
        release = threading.Timer(0.5, holder.rollback)  # released within the lock timeout: it waits and applies
        release.start()
        assert [m.version for m in schema.migrate(db, lock_timeout_ms=5_000)] == [newest.version]
        release.join()
        assert schema.pending(db) == []
    finally:
        holder.close()
        db.close()
