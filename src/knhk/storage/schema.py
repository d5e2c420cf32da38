"""Versioned schema migrations (``knhk db migrate``), applied in order, each in its own transaction.

Migration files live in ``knhk/storage/migrations`` as ``NNNN_name.sqlite.sql`` and
``NNNN_name.postgresql.sql``; both dialects must define the same versions. ``schema_migrations`` records
what has been applied, with the SHA-256 of the file, so an edited, already-applied migration is detected.
Concurrent migrators are serialised (SQLite write lock / PostgreSQL advisory lock).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources

from knhk.errors import ConfigurationError
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


def migrate(db: Database) -> list[Migration]:
    """Apply every pending migration; return those applied by this call."""
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
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("knhk.migrations"),))
        conn.execute(_BOOKKEEPING)
        have = {int(r[0]) for r in conn.fetchall("SELECT version FROM schema_migrations")}
        for migration in available("postgresql"):
            if migration.version in have:
                continue
            conn.raw.execute(migration.sql.encode())  # type: ignore[attr-defined]
            conn.execute("INSERT INTO schema_migrations VALUES (?,?,?,?)",
                         (migration.version, migration.name, migration.digest, time.time_ns() // 1000))
            done.append(migration)
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
