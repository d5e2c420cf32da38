"""Logical exports of a PostgreSQL database with pg_dump (custom format), restored with pg_restore.

``dump`` exports the snapshot of a REPEATABLE READ transaction (``pg_export_snapshot``), reads the manifest
facts in that same transaction and has pg_dump dump exactly that snapshot, so the manifest is exact while the
service keeps writing. Restores load into a new database on the same server beside the live one; the swap is
two ``ALTER DATABASE … RENAME`` in one transaction, so it happens completely or not at all.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql

from knhk.backup import store
from knhk.backup.manifest import StoreState
from knhk.backup.pgurl import database_name, url_with
from knhk.config import Settings
from knhk.errors import ConfigurationError, ConflictError, DependencyUnavailableError, IntegrityError
from knhk.storage.database import Database

DATA_FILE = "data.pgdump"


def tool(settings: Settings, name: str) -> str:
    if settings.backup_pg_bin is not None:
        return str(settings.backup_pg_bin / name)
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(f"{name} is not installed (or set KNHK_BACKUP_PG_BIN to PostgreSQL's bin directory)")
    return found


def _run(argv: list[str], what: str, timeout: float = 3600) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except OSError as exc:
        raise ConfigurationError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DependencyUnavailableError(f"{what} failed: {detail[-1] if detail else f'exit {done.returncode}'}")


def dump(db: Database, url: str, dest: Path, settings: Settings) -> StoreState:
    """pg_dump the database's current snapshot into ``dest``; return the facts of that same snapshot."""
    with db.snapshot() as conn:
        # the exporting transaction sits idle while pg_dump works; a server-wide idle timeout must spare it
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        row = conn.fetchone("SELECT pg_export_snapshot()")
        assert row is not None
        snapshot = str(row[0])
        state = store.read_state(conn)
        _run([tool(settings, "pg_dump"), "--format=custom", f"--snapshot={snapshot}", f"--file={dest}",
              f"--dbname={url}"], "pg_dump")
    return state


def _admin(url: str) -> psycopg.Connection[Any]:
    try:
        admin = url_with(url, dbname="postgres", target_session_attrs="read-write")
        return psycopg.connect(admin, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DependencyUnavailableError(f"PostgreSQL is unreachable: {exc}") from exc


class SideDatabase:
    """A new database beside the live one, loaded from a dump, verified, then renamed into place."""

    def __init__(self, url: str, backup_id: str, settings: Settings) -> None:
        self.live_url = url
        self.target = database_name(url)
        self.name = f"{self.target[:30]}_restore_{uuid.uuid4().hex[:10]}"
        self.url = url_with(url, dbname=self.name)
        self.settings = settings
        self.backup_id = backup_id

    def load(self, data: Path) -> None:
        with _admin(self.live_url) as admin:
            admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self.name)))
        try:
            _run([tool(self.settings, "pg_restore"), "--exit-on-error", "--no-owner", f"--dbname={self.url}",
                  str(data)], f"pg_restore of backup {self.backup_id}")
        except DependencyUnavailableError as exc:
            self.drop()
            raise IntegrityError(exc.message) from exc

    def drop(self) -> None:
        with _admin(self.live_url) as admin:
            admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(self.name)))

    def swap_in(self, keep_suffix: str, *, force: bool) -> str | None:
        """Rename the live database away and this one into its place, in one transaction."""
        keep = f"{self.target[:30]}_{keep_suffix}"[:63]
        with _admin(self.live_url) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.target,)).fetchone()
            others = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                                   "pg_backend_pid()", (self.target,)).fetchone()
            if exists and others and others[0]:
                if not force:
                    raise ConflictError(f"{others[0]} session(s) use database {self.target}; stop the service or "
                                        "pass --force to disconnect them")
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND "
                              "pid <> pg_backend_pid()", (self.target,))
            deadline = time.monotonic() + 30
            while True:
                try:
                    with admin.transaction():
                        if exists:
                            admin.execute(pgsql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                pgsql.Identifier(self.target), pgsql.Identifier(keep)))
                        admin.execute(pgsql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            pgsql.Identifier(self.name), pgsql.Identifier(self.target)))
                    break
                except psycopg.errors.ObjectInUse as exc:  # terminated sessions take a moment to go
                    if time.monotonic() > deadline:
                        raise ConflictError(f"database {self.target} is still in use: {exc}") from exc
                    time.sleep(0.1)
        return keep if exists else None


@contextmanager
def scratch_database(url: str, data: Path, settings: Settings) -> Iterator[str]:
    """A throw-away database on the same server loaded from ``data``; dropped afterwards."""
    side = SideDatabase(url, "verify", settings)
    side.load(data)
    try:
        yield side.url
    finally:
        side.drop()
