"""The database connection layer shared by both backends (SPEC §11).

SQL is written once with ``?`` parameter markers and translated for psycopg. SQLite runs in WAL mode with
``synchronous=FULL`` so a committed write is durable before it is acknowledged; write transactions take
the database write lock up front (``BEGIN IMMEDIATE``). PostgreSQL uses a psycopg connection pool
(defaults max 50, min 10), a statement timeout, and transaction-scoped advisory locks where one writer at a
time is required across processes (:meth:`Database.transaction` with ``lock=``).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlparse

from knhk.errors import ConfigurationError, DependencyUnavailableError
from knhk.ops import resilience
from knhk.ops.telemetry import db_bulk, db_call
from knhk.storage.fields import FieldCipher

log = logging.getLogger("knhk.storage")

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]


class Connection(Protocol):
    """The small surface every store module uses."""

    dialect: Dialect
    fields: FieldCipher | None  # the database's encryption at rest of PHI fields (None: none configured)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows as fast as the backend allows (PostgreSQL: COPY)."""
        ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def savepoint(self) -> Any: ...


@lru_cache(maxsize=1024)
def _to_pyformat(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class _SqliteConnection:
    dialect: Dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection, fields: FieldCipher | None = None) -> None:
        self.raw = raw
        self.fields = fields

    @db_call
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.raw.execute(sql, params).rowcount)

    @db_call
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    @db_bulk
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ",".join("?" * len(columns))
            self.raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    @db_call
    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.raw.execute(sql, params).fetchone()
        return row

    @db_call
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.raw.execute(sql, params).fetchall()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.raw.execute("SAVEPOINT knhk_sp")
        try:
            yield
        except BaseException:
            self.raw.execute("ROLLBACK TO SAVEPOINT knhk_sp")
            self.raw.execute("RELEASE SAVEPOINT knhk_sp")
            raise
        self.raw.execute("RELEASE SAVEPOINT knhk_sp")


class _PgConnection:
    dialect: Dialect = "postgresql"

    def __init__(self, raw: Any, fields: FieldCipher | None = None) -> None:
        self.raw = raw
        self.fields = fields

    @db_call
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.raw.execute(_to_pyformat(sql), params, prepare=False).rowcount)

    @db_call
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.raw.cursor() as cur:
                cur.executemany(_to_pyformat(sql), rows)

    @db_bulk
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY: one statement and a stream of rows, instead of one INSERT per row."""
        if rows:
            with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    @db_call
    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.raw.execute(_to_pyformat(sql), params).fetchone()
        return row

    @db_call
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self.raw.execute(_to_pyformat(sql), params).fetchall()
        return rows

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.raw.transaction():
            yield


class Database:
    """A database reached through a URL: ``sqlite:///path`` or ``postgresql://…``."""

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 10,
        pool_max: int = 50,
        statement_timeout_ms: int = 30_000,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self._local = threading.local()
        self._closed = False
        self._sqlite_conns: list[sqlite3.Connection] = []
        self._sqlite_lock = threading.Lock()
        self._pool: Any = None
        self.fields: FieldCipher | None = None  # set by the installation once its PHI keys are loaded
        if url.startswith("sqlite://"):
            self.dialect: Dialect = "sqlite"
            path = unquote(urlparse(url).path)
            if url.startswith("sqlite:////"):
                path = "/" + path.lstrip("/")
            if not path or path == "/":
                raise ConfigurationError(f"database URL {url!r} names no SQLite file")
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._breaker = resilience.breaker_for("postgresql")
            self._breaker.recover_with(self._probe)  # while open: a fresh connection ends the open period early
            self._open_pool(pool_min, pool_max, statement_timeout_ms, connect_timeout_s)
        else:
            raise ConfigurationError(f"unsupported database URL {url!r}")

    # -- PostgreSQL -------------------------------------------------------------------------------------
    def _probe(self) -> None:
        """One fresh connection (honouring the URL's hosts and target_session_attrs), bounded at 2 s."""
        import psycopg

        psycopg.connect(self.url, connect_timeout=2).close()

    def _open_pool(self, pool_min: int, pool_max: int, timeout_ms: int, connect_timeout_s: float) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        options = f"-c statement_timeout={timeout_ms}" if timeout_ms else ""

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.autocommit = True

        self._pool = ConnectionPool(
            self.url,
            min_size=min(pool_min, pool_max),
            max_size=pool_max,
            kwargs={"options": options, "connect_timeout": max(1, int(connect_timeout_s))},
            configure=configure,
            open=False,
            timeout=connect_timeout_s,
            name="knhk",
        )
        try:
            # one direct connection first: a refused or unresolvable server is named at once, in the driver's
            # words, instead of after the pool's whole wait as "pool initialization incomplete"
            psycopg.connect(self.url, connect_timeout=max(1, int(connect_timeout_s)), options=options).close()
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except Exception as exc:
            self._pool.close()
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DependencyUnavailableError(
                f"PostgreSQL at {_redact(self.url)} is unreachable: {reason}"
            ) from exc

    def pool_stats(self) -> dict[str, int]:
        """Connections by state, for the ``knhk_db_pool_connections`` gauge."""
        if self._pool is None:
            return {}
        stats = self._pool.get_stats()
        size = int(stats.get("pool_size", 0))
        idle = int(stats.get("pool_available", 0))
        return {"in_use": size - idle, "idle": idle, "waiting": int(stats.get("requests_waiting", 0))}

    # -- SQLite -----------------------------------------------------------------------------------------
    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
            with self._sqlite_lock:
                self._sqlite_conns.append(conn)
        return conn

    # -- public -----------------------------------------------------------------------------------------
    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection in autocommit mode, for reads and single statements."""
        if self._closed:
            raise DependencyUnavailableError("the database handle is closed")
        if self.dialect == "sqlite":
            yield _SqliteConnection(self._sqlite(), self.fields)
            return
        with self._pg_connection() as raw:
            yield _PgConnection(raw, self.fields)

    @contextmanager
    def _pg_connection(self) -> Iterator[Any]:
        import psycopg
        import psycopg_pool

        with self._breaker.guard():
            try:
                ctx = self._pool.connection()
                raw = ctx.__enter__()
            except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
                raise DependencyUnavailableError(f"PostgreSQL is unavailable: {exc}") from exc
            try:
                yield raw
            except BaseException as exc:
                ctx.__exit__(type(exc), exc, exc.__traceback__)
                if isinstance(exc, psycopg.OperationalError):
                    raise DependencyUnavailableError(f"PostgreSQL is unavailable: {exc}") from exc
                raise
            ctx.__exit__(None, None, None)

    @contextmanager
    def transaction(self, *, lock: str | None = None, write: bool = True) -> Iterator[Connection]:
        """One transaction. ``write`` takes SQLite's write lock up front; ``lock`` also takes a
        PostgreSQL transaction-scoped advisory lock of that name (SQLite's write lock already serialises).
        """
        if self.dialect == "sqlite":
            raw = self._sqlite()
            started = time.monotonic()
            while True:
                try:
                    raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() - started > 120:
                        raise DependencyUnavailableError(f"SQLite database is locked: {exc}") from exc
                    time.sleep(0.005)
            try:
                yield _SqliteConnection(raw, self.fields)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
            return
        with self._pg_connection() as raw, raw.transaction():
            if lock is not None:
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(lock),))
            yield _PgConnection(raw, self.fields)

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction whose reads all see one consistent state of the database.

        SQLite (WAL): a deferred transaction reads from one snapshot from its first SELECT on. PostgreSQL:
        REPEATABLE READ, READ ONLY. Used where several reads must agree (e.g. a log's head, its row count
        and its checkpoints, read while appends continue).
        """
        if self._closed:
            raise DependencyUnavailableError("the database handle is closed")
        if self.dialect == "sqlite":
            raw = self._sqlite()
            raw.execute("BEGIN")
            try:
                yield _SqliteConnection(raw, self.fields)
            finally:
                raw.execute("ROLLBACK")
            return
        with self._pg_connection() as raw, raw.transaction():
            raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _PgConnection(raw, self.fields)

    def dedicated(self) -> Database:
        """A second handle on the same database (its own connections), e.g. for a sequencer thread."""
        if self.dialect != "postgresql":
            return self
        other = Database(self.url, pool_min=1, pool_max=2)
        other.fields = self.fields
        return other

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.close()
        with self._sqlite_lock:
            for conn in self._sqlite_conns:
                with suppress(sqlite3.Error):
                    conn.close()
            self._sqlite_conns.clear()
        self._local = threading.local()


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
