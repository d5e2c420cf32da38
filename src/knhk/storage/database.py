"""The database connection layer shared by both backends (SPEC §11).

SQL is written once with ``?`` parameter markers and translated for psycopg. SQLite runs in WAL mode with
``synchronous=FULL`` so a committed write is durable before it is acknowledged; write transactions take
the database write lock up front (``BEGIN IMMEDIATE``). PostgreSQL uses a psycopg connection pool
(defaults max 50, min 10), a statement timeout, and transaction-scoped advisory locks where one writer at a
time is required across processes (:meth:`Database.transaction` with ``lock=``).

Every PostgreSQL call is bounded (docs/reliability.md): a new connection by ``connect_timeout``, a statement by
the server's ``statement_timeout``, the wait for a pool connection by ``pool_timeout_s`` (then
:class:`PoolExhaustedError`, a 503), and a call to a server that stopped answering by the
:class:`~knhk.storage.watchdog.Watchdog`, which also opens the ``postgresql`` circuit breaker at once. While the
breaker is open every call is refused without waiting. :meth:`Database.health` is the non-blocking, cached
health state the service reports.
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
from knhk.storage.watchdog import Watchdog, liveness

log = logging.getLogger("knhk.storage")

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]

#: a waiter for a pool connection looks at the breaker (and gives up when it opened) at least this often
_POOL_SLICE_S = 0.1
#: how long the pool keeps retrying a failed (re)connection before leaving it to the next request's demand
_RECONNECT_S = 1.0
#: how long :meth:`Database.health` reuses its last answer
_HEALTH_TTL_S = 1.0


class PoolExhaustedError(DependencyUnavailableError):
    """Every pool connection stayed in use for the whole pool timeout (the database itself answers)."""

    code = "pool_exhausted"


def _counts_against_breaker(exc: BaseException) -> bool:
    """A dependency failure of PostgreSQL, not an exhausted pool of a database that answers."""
    return not isinstance(exc, PoolExhaustedError) and resilience.is_dependency_failure(exc)


class Connection(Protocol):
    """The small surface every store module uses."""

    dialect: Dialect
    fields: FieldCipher | None  # the database's encryption at rest of PHI fields (None: none configured)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                    types: Sequence[str] | None = None) -> None:
        """Insert many rows as fast as the backend allows (PostgreSQL: COPY; binary COPY when ``types`` names
        each column's PostgreSQL type)."""
        ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def savepoint(self) -> Any: ...


@lru_cache(maxsize=1024)
def _to_pyformat(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def take_lock(conn: Connection, name: str) -> None:
    """Take the transaction-scoped lock ``name`` now, inside ``conn``'s open transaction (PostgreSQL advisory
    lock, as :meth:`Database.transaction` with ``lock``; SQLite's write lock is held from the transaction's
    start): statements run before it need not wait for the lock."""
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))


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
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                    types: Sequence[str] | None = None) -> None:
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
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                    types: Sequence[str] | None = None) -> None:
        """COPY: one statement and a stream of rows, instead of one INSERT per row (``types``: binary COPY, no
        text formatting or parsing of each value)."""
        if rows:
            fmt = " (FORMAT BINARY)" if types is not None else ""
            with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN{fmt}") as copy:
                if types is not None:
                    copy.set_types(list(types))
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
        pool_timeout_s: float = 5.0,
        hung_check_s: float = 0.25,
        liveness_timeout_s: float = 0.5,
    ) -> None:
        self.url = url
        self._limits = (statement_timeout_ms, connect_timeout_s, hung_check_s)
        self.pool_timeout_s = pool_timeout_s
        self.liveness_timeout_s = liveness_timeout_s
        self._health: tuple[float, dict[str, Any]] | None = None
        self._health_lock = threading.Lock()
        self._watchdog: Watchdog | None = None
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
            self._watchdog = Watchdog(url, check_after_s=hung_check_s, liveness_timeout_s=liveness_timeout_s,
                                      on_outage=self._breaker.trip)
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
            timeout=self.pool_timeout_s,
            # give up a failing reconnection after ~1 s instead of backing off for 5 min: the pool then grows
            # again on the first request (the breaker's trial once the database is back) instead of waiting out
            # a backoff of up to minutes (measured: 8 s of 503s after the database had returned)
            reconnect_timeout=_RECONNECT_S,
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

    def health(self) -> dict[str, Any]:
        """The database's health without blocking a caller for long: ``{"status": "up"|"down", "latency_ms",
        "error"?}``. PostgreSQL: down at once while the breaker is open; else a liveness probe (bounded by
        ``liveness_timeout_s``) and ``SELECT 1`` through the pool (a pool wait of at most that bound; an
        exhausted pool of a live server is up, with ``pool_exhausted``). An "up" answer is reused for 1 s, and
        a caller arriving while another computes it gets the previous answer. SQLite: ``SELECT 1`` each time (a
        local file, no lock taken)."""
        if self.dialect == "sqlite":
            return self._check_health()
        now = time.monotonic()
        cached = self._health
        # an "up" answer is reused for a second; a "down" one is recomputed (cheap and bounded: at once while
        # the breaker is open), so the first check after the database returns already says so
        if cached is not None and cached[1]["status"] == "up" and now - cached[0] < _HEALTH_TTL_S:
            return cached[1]
        if not self._health_lock.acquire(blocking=cached is None):
            return cached[1] if cached is not None else {"status": "down", "error": "health check in progress"}
        try:
            result = self._check_health()
            self._health = (time.monotonic(), result)
            return result
        finally:
            self._health_lock.release()

    def _check_health(self) -> dict[str, Any]:
        started = time.perf_counter()

        def answer(error: str | None = None, **extra: Any) -> dict[str, Any]:
            ms = round((time.perf_counter() - started) * 1000, 2)
            return {"status": "down" if error else "up", "latency_ms": ms, **({"error": error} if error else {}),
                    **extra}

        if self.dialect == "sqlite":
            try:
                with self.connection() as conn:
                    conn.fetchone("SELECT 1")
            except Exception as exc:
                return answer(str(exc)[:300] or type(exc).__name__)
            return answer()
        if self._breaker.current_state == "open":
            return answer(f"circuit breaker open (retry in {self._breaker.retry_after_s()} s)")
        reason = liveness(self.url, self.liveness_timeout_s)
        if reason is not None:
            assert self._watchdog is not None
            self._watchdog.report(reason)  # calls in progress are aborted and the breaker opens, as on its own probe
            return answer(reason[:300])
        try:
            with self._pg_connection(pool_timeout_s=self.liveness_timeout_s) as raw:
                raw.execute("SELECT 1")
        except PoolExhaustedError:
            return answer(pool_exhausted=True)
        except Exception as exc:
            return answer(" ".join(str(exc).split())[:300] or type(exc).__name__)
        return answer()

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

    def _checkout(self, timeout_s: float) -> Any:
        """A pool connection, waiting at most ``timeout_s``; given up at once when the breaker opens meanwhile
        (the watchdog found the server down or hung)."""
        import psycopg
        import psycopg_pool

        assert self._watchdog is not None
        deadline = time.monotonic() + timeout_s
        errors = self._pool.get_stats().get("connections_errors", 0)
        with self._watchdog.waiting():
            while True:
                left = deadline - time.monotonic()
                try:
                    return self._pool.getconn(timeout=max(0.001, min(left, _POOL_SLICE_S)))
                except psycopg_pool.PoolTimeout:
                    self._breaker.refuse_if_open()
                    stats = self._pool.get_stats()
                    if (stats.get("connections_errors", 0) > errors
                            and stats.get("pool_size", 0) < self._pool.max_size):
                        # not exhaustion: the pool has room but its connection attempts fail (a server that
                        # answers the protocol yet refuses connections: shutting down, too many clients,
                        # the database closed to connections, authentication)
                        raise DependencyUnavailableError(
                            "PostgreSQL accepts no new connections (the pool's attempts fail; see the "
                            "psycopg.pool log)") from None
                    if left <= _POOL_SLICE_S and self._watchdog.held_count() < self._pool.max_size:
                        # callers do not hold every connection: the pool could not connect in time
                        raise DependencyUnavailableError(
                            f"PostgreSQL gave no connection within {timeout_s:g} s although the pool has room "
                            "(its connection attempts fail or hang; see the psycopg.pool log)") from None
                    if left <= _POOL_SLICE_S:
                        raise PoolExhaustedError(
                            f"all {self._pool.max_size} PostgreSQL pool connections stayed in use for "
                            f"{timeout_s:g} s (KNHK_DB_POOL_TIMEOUT_S); retry shortly", retry_after=1) from None
                except psycopg.OperationalError as exc:
                    raise DependencyUnavailableError(f"PostgreSQL is unavailable: {exc}") from exc

    @contextmanager
    def _pg_connection(self, pool_timeout_s: float | None = None) -> Iterator[Any]:
        import psycopg

        assert self._watchdog is not None
        with self._breaker.guard(_counts_against_breaker):
            raw = self._checkout(self.pool_timeout_s if pool_timeout_s is None else pool_timeout_s)
            try:
                with self._watchdog.held(raw) as aborted, raw:
                    try:
                        yield raw
                    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                        if aborted():
                            raise DependencyUnavailableError(
                                "PostgreSQL stopped answering (the call was aborted after "
                                f"{self._watchdog.check_after_s + self._watchdog.liveness_timeout_s:g} s; a write in "
                                "progress may still commit when the server resumes: retrying it with the same ids "
                                "is safe)") from exc
                        if isinstance(exc, psycopg.OperationalError):
                            raise DependencyUnavailableError(f"PostgreSQL is unavailable: {exc}") from exc
                        raise
            finally:
                self._pool.putconn(raw)

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
        statement_ms, connect_s, hung_s = self._limits
        other = Database(self.url, pool_min=1, pool_max=2, statement_timeout_ms=statement_ms,
                         connect_timeout_s=connect_s, pool_timeout_s=self.pool_timeout_s, hung_check_s=hung_s,
                         liveness_timeout_s=self.liveness_timeout_s)
        other.fields = self.fields
        return other

    def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.stop()
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
