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

Pending PostgreSQL migrations are applied in one transaction, except one whose first line is
``-- knhk:no-transaction``: ``CREATE INDEX CONCURRENTLY`` cannot run in a transaction, so such a migration runs
statement by statement on a connection of its own in autocommit mode, under a session-level hold of the same
advisory lock, once everything before it has committed. It has to be safe to re-run after a failure halfway:
each ``CREATE INDEX CONCURRENTLY`` must say ``IF NOT EXISTS``, and an invalid index that a failed build left
behind is dropped (``DROP INDEX CONCURRENTLY``) before it is built again. Its statements are split at
semicolons ending a line, so it may not hold dollar-quoted bodies (functions and triggers belong in
transactional migrations).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from knhk.errors import ConfigurationError, DependencyUnavailableError
from knhk.storage.database import Database, lock_key, take_lock

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgresql)\.sql$")
NO_TRANSACTION = "-- knhk:no-transaction"
_CONCURRENT_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(IF\s+NOT\s+EXISTS\s+)?(\"?[A-Za-z_][\w$]*\"?)",
    re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def transactional(self) -> bool:
        """False for a PostgreSQL migration marked ``-- knhk:no-transaction`` on its first line."""
        return not self.sql.lstrip().startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        """A no-transaction migration's statements, in order, each checked to be safe to re-run."""
        if "$$" in self.sql:
            raise ConfigurationError(f"migration {self.label} runs outside a transaction and may not hold "
                                     "dollar-quoted bodies (put functions and triggers in a transactional one)")
        out: list[str] = []
        current: list[str] = []
        for line in self.sql.splitlines():
            code = line.split("--", 1)[0].rstrip()
            if not code.strip():
                continue
            current.append(code)
            if code.endswith(";"):
                out.append("\n".join(current).strip().removesuffix(";"))
                current = []
        if current:
            out.append("\n".join(current).strip())
        for statement in out:
            index = _CONCURRENT_INDEX.match(statement)
            if index and not index.group(1):
                raise ConfigurationError(f"migration {self.label}: {index.group(2)} must be created with "
                                         "CREATE INDEX CONCURRENTLY IF NOT EXISTS (a retry after a failure "
                                         "halfway re-runs every statement)")
        return out


def available(dialect: str, source: Traversable | Path | None = None) -> list[Migration]:
    """The migrations of one dialect, in version order (``source``: another directory, for tests)."""
    out: list[Migration] = []
    for item in (source or resources.files("knhk.storage.migrations")).iterdir():
        match = _FILE.match(item.name)
        if match and match.group(3) == dialect:
            out.append(Migration(int(match.group(1)), match.group(2), item.read_text()))
    out.sort(key=lambda m: m.version)
    for migration in out:
        if not migration.transactional:
            if dialect != "postgresql":
                raise ConfigurationError(f"migration {migration.label}: {NO_TRANSACTION} is for PostgreSQL only")
            migration.statements()
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


def pending(db: Database, source: Traversable | Path | None = None) -> list[Migration]:
    done = applied(db)
    migrations = available(db.dialect, source)
    for migration in migrations:
        if migration.version in done and done[migration.version] != migration.digest:
            raise ConfigurationError(f"migration {migration.label} was changed after it was applied")
    return [m for m in migrations if m.version not in done]


def migrate(db: Database, *, lock_timeout_ms: int = 5_000, statement_timeout_ms: int = 600_000,
            source: Traversable | Path | None = None) -> list[Migration]:
    """Apply every pending migration; return those applied by this call. On PostgreSQL each statement waits
    at most ``lock_timeout_ms`` for a table lock and runs at most ``statement_timeout_ms`` (0: no limit)."""
    if not pending(db, source):
        return []
    done: list[Migration] = []
    if db.dialect == "sqlite":
        with db.connection() as conn:
            conn.execute(_BOOKKEEPING)
        raw = db._sqlite()
        for migration in available("sqlite", source):
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
    groups: list[list[Migration]] = []
    for migration in available("postgresql", source):
        if migration.transactional and groups and groups[-1][-1].transactional:
            groups[-1].append(migration)
        else:
            groups.append([migration])
    for group in groups:
        if group[0].transactional:
            done += _apply_in_one_transaction(db, group, lock_timeout_ms, statement_timeout_ms)
        else:
            done += _apply_outside_a_transaction(db, group[0], lock_timeout_ms, statement_timeout_ms)
    return done


def _apply_in_one_transaction(db: Database, group: Iterable[Migration], lock_timeout_ms: int,
                              statement_timeout_ms: int) -> list[Migration]:
    import psycopg

    done: list[Migration] = []
    current = "the bookkeeping"
    try:
        with db.transaction() as conn:
            # wait as long as another migrator takes (it holds the lock for its whole run) ...
            conn.execute("SET LOCAL lock_timeout = 0")
            conn.execute("SET LOCAL statement_timeout = 0")
            take_lock(conn, "knhk.migrations")
            # ... but never queue a table lock of the running service behind a long transaction for long
            conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
            conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
            conn.execute(_BOOKKEEPING)
            have = {int(r[0]) for r in conn.fetchall("SELECT version FROM schema_migrations")}
            for migration in group:
                if migration.version in have:
                    continue
                current = f"migration {migration.label}"
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


def _apply_outside_a_transaction(db: Database, migration: Migration, lock_timeout_ms: int,
                                 statement_timeout_ms: int) -> list[Migration]:
    """Run a ``-- knhk:no-transaction`` migration statement by statement (see the module docstring)."""
    import psycopg

    statements = migration.statements()
    try:
        conn: psycopg.Connection[Any] = psycopg.connect(db.url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DependencyUnavailableError(f"PostgreSQL is unavailable: {exc}") from exc
    step = 0
    try:
        with conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("knhk.migrations"),))
            conn.execute(_BOOKKEEPING)
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)).fetchone():
                return []
            conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
            conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            for statement in statements:
                step += 1
                index = _CONCURRENT_INDEX.match(statement)
                if index:
                    name = index.group(2).strip('"')
                    left = conn.execute("SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                        "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace "
                                        "AND NOT i.indisvalid", (name,)).fetchone()
                    if left:  # an earlier build of it failed halfway
                        conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'.encode())
                conn.execute(statement.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s,%s,%s,%s)",
                         (migration.version, migration.name, migration.digest, time.time_ns() // 1000))
    except psycopg.Error as exc:
        raise DependencyUnavailableError(
            f"migration {migration.label} (outside a transaction) stopped at statement {step} of "
            f"{len(statements)}: {str(exc).strip()}; the statements before it stay applied and the migration "
            "is not recorded: fix the cause and run `knhk db migrate` again (it is safe to re-run)") from exc
    return [migration]


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
