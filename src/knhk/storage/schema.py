"""Versioned schema migrations (``knhk db migrate``), applied in order, each in its own transaction.

Migration files live in ``knhk/storage/migrations`` as ``NNNN_name.sqlite.sql`` and
``NNNN_name.postgresql.sql``; both dialects must define the same versions. ``schema_migrations`` records
what has been applied, with the SHA-256 of the file, so an edited, already-applied migration is detected.
Concurrent migrators are serialised (SQLite write lock / PostgreSQL advisory lock): each migration is applied
exactly once however many processes start at once.

Zero downtime on PostgreSQL (SPEC §11, docs/service.md): a migration runs while replicas of the previous
release keep serving, so it must be backward compatible (``tests/storage/test_migrations_lint.py`` runs
squawk over every PostgreSQL migration), and the runner bounds what it can do to them: once it holds the
migrators' advisory lock it sets ``lock_timeout`` (a DDL statement queued behind a long transaction would block
every later query of that table) and ``statement_timeout`` for the migration's transaction, and a migration
that cannot get its locks in time is rolled back whole, to be retried.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources

from knhk.errors import ConfigurationError, DependencyUnavailableError
from knhk.storage.database import Database, lock_key

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgresql)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available(dialect: str) -> list[Migration]:
    out: list[Migration] = []
    for item in resources.files("knhk.storage.migrations").iterdir():
        match = _FILE.match(item.name)
        if match and match.group(3) == dialect:
            out.append(Migration(int(match.group(1)), match.group(2), item.read_text()))
    out.sort(key=lambda m: m.version)
    return out


_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, digest TEXT NOT NULL, applied_us BIGINT NOT NULL)"
)


def applied(db: Database) -> dict[int, str]:
    with db.connection() as conn:
        if db.dialect == "sqlite":
            exists = conn.fetchone("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'")
        else:
            exists = conn.fetchone("SELECT to_regclass('schema_migrations')")
            exists = exists if exists and exists[0] else None
        if not exists:
            return {}
        return {int(v): str(d) for v, d in conn.fetchall("SELECT version, digest FROM schema_migrations")}


def pending(db: Database) -> list[Migration]:
    done = applied(db)
    for migration in available(db.dialect):
        if migration.version in done and done[migration.version] != migration.digest:
            raise ConfigurationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it was applied"
            )
    return [m for m in available(db.dialect) if m.version not in done]


def migrate(db: Database, *, lock_timeout_ms: int = 5_000, statement_timeout_ms: int = 600_000) -> list[Migration]:
    """Apply every pending migration; return those applied by this call. On PostgreSQL each statement waits
    at most ``lock_timeout_ms`` for a table lock and runs at most ``statement_timeout_ms`` (0: no limit)."""
    if not pending(db):
        return []
    done: list[Migration] = []
    if db.dialect == "sqlite":
        with db.connection() as conn:
            conn.execute(_BOOKKEEPING)
        raw = db._sqlite()
        for migration in available("sqlite"):
            raw.execute("BEGIN IMMEDIATE")
            try:
                if raw.execute("SELECT 1 FROM schema_migrations WHERE version=?",
                               (migration.version,)).fetchone():
                    raw.execute("COMMIT")
                    continue
                for statement in _split_sqlite(migration.sql):
                    raw.execute(statement)
                raw.execute("INSERT INTO schema_migrations VALUES (?,?,?,?)",
                            (migration.version, migration.name, migration.digest, time.time_ns() // 1000))
                raw.execute("COMMIT")
            except sqlite3.Error:
                raw.execute("ROLLBACK")
                raise
            done.append(migration)
        return done
    import psycopg

    current = "the bookkeeping"
    try:
        with db.transaction() as conn:
            # wait as long as another migrator takes (it holds the lock for its whole run) ...
            conn.execute("SET LOCAL lock_timeout = 0")
            conn.execute("SET LOCAL statement_timeout = 0")
            conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("knhk.migrations"),))
            # ... but never queue a table lock of the running service behind a long transaction for long
            conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
            conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
            conn.execute(_BOOKKEEPING)
            have = {int(r[0]) for r in conn.fetchall("SELECT version FROM schema_migrations")}
            for migration in available("postgresql"):
                if migration.version in have:
                    continue
                current = f"migration {migration.version:04d}_{migration.name}"
                conn.raw.execute(migration.sql.encode())  # type: ignore[attr-defined]
                conn.execute("INSERT INTO schema_migrations VALUES (?,?,?,?)",
                             (migration.version, migration.name, migration.digest, time.time_ns() // 1000))
                done.append(migration)
    except DependencyUnavailableError as exc:
        cause = exc.__cause__
        if isinstance(cause, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            raise DependencyUnavailableError(
                f"{current} was rolled back ({str(cause).strip()}): a long transaction holds a lock it needs "
                "(see pg_stat_activity); nothing was applied, run `knhk db migrate` again") from cause
        raise
    return done


def _split_sqlite(script: str) -> list[str]:
    """Split a SQLite script into complete statements (triggers keep their inner semicolons)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--") and not current.strip():
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
