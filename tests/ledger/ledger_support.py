"""Helpers shared by the ledger tests (not a test module).

They open runtimes on either backend, run the real ``knhk`` command, copy a populated database, reach the
database through a raw driver connection with the append-only protection removed (what a superuser could
do), and rewrite a log with the log's own signing key (what an attacker holding the key could do). Nothing
here replaces any part of KNHK: tampering goes through plain SQL, and every check goes through the real
verifier.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.proof.canonical import canonical_bytes
from knhk.proof.checkpoint import origin_for, sign_checkpoint
from knhk.proof.entry import EntryDraft, entry_id
from knhk.proof.merkle import Frontier, decompose, fold, leaf_hash
from knhk.proof.signing import SigningKey

PG_ADMIN_URL = os.environ.get("KNHK_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[2]
KNHK = str(REPO / ".venv" / "bin" / "knhk")
PYTHON = str(REPO / ".venv" / "bin" / "python")
LEDGER_TABLES = ("ledger_entries", "ledger_nodes", "ledger_checkpoints", "ledger_keys", "ledger_key_use")
NOBODY_DB = "postgresql://nobody@127.0.0.1:1/x"


# -- databases ------------------------------------------------------------------------------------------
def new_pg_database(template: str | None = None) -> str:
    """A new PostgreSQL database (optionally a copy of ``template``'s database); returns its URL."""
    name = f"knhk_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if template is None:
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            source = template.rsplit("/", 1)[1]
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def new_database(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / f'knhk-{uuid.uuid4().hex[:8]}.db'}"
    return new_pg_database()


def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(str(sqlite_path(url)) + suffix).unlink(missing_ok=True)
    else:
        drop_pg_database(url)


def copy_database(url: str, directory: Path) -> str:
    """An independent copy of a database nobody is writing to (SQLite backup API / PostgreSQL TEMPLATE)."""
    if url.startswith("sqlite"):
        target = directory / f"copy-{uuid.uuid4().hex[:8]}.db"
        src = sqlite3.connect(sqlite_path(url))
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return f"sqlite:///{target}"
    return new_pg_database(template=url)


@contextmanager
def scratch_copy(url: str, directory: Path) -> Iterator[str]:
    copy = copy_database(url, directory)
    try:
        yield copy
    finally:
        drop_database(copy)


# -- settings, runtimes, the CLI ------------------------------------------------------------------------
def make_settings(url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": url,
        "db_pool_min": 1,
        "db_pool_max": 8,
        "checkpoint_every_entries": 1000,
        "checkpoint_every_seconds": 3600,
    }
    values.update(overrides)
    return Settings(**values)


def open_runtime(url: str, data_dir: Path, **overrides: Any) -> Runtime:
    """A runtime on ``url`` whose logs start empty (the sector packs are not installed)."""
    return Runtime.open(make_settings(url, data_dir, **overrides), install_packs=False)


def cli_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNHK_")}
    env["KNHK_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["KNHK_DATABASE_URL"] = database_url
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(args: Sequence[str], data_dir: Path, database_url: str | None, *, stdin: str | None = None,
            timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``knhk`` command in a subprocess and capture everything it prints."""
    return subprocess.run(
        [KNHK, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env=cli_env(data_dir, database_url, **(env or {})), check=False,
    )


def run_cli_many(calls: Sequence[Sequence[str]], data_dir: Path, database_url: str | None, *,
                 timeout: float = 180, env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Run several independent ``knhk`` commands at once (each still a separate process)."""
    procs = [subprocess.Popen([KNHK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(data_dir, database_url, **(env or {})))
             for args in calls]
    out = []
    for args, proc in zip(calls, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess([KNHK, *args], proc.returncode, stdout, stderr))
    return out


def sample_drafts(n: int, log: str = "receipts", start: int = 0) -> list[EntryDraft]:
    """Entries with varied, realistic content (sectors, subjects, evidence, nested data, non-ASCII text)."""
    sectors = [None, "finance", "healthcare", "manufacturing", "logistics"]
    out = []
    for i in range(start, start + n):
        out.append(EntryDraft(
            log=log,
            kind=["proposal.validated", "snapshot.promoted", "pattern.detected", "cycle.completed"][i % 4],
            sector=sectors[i % 5],
            subject=None if i % 3 == 0 else f"sub_{i:032x}",
            outcome=["ok", "rejected", "approved"][i % 3],
            reason=None if i % 2 else f"réason {i} – ✓ 𝄞",
            evidence=[f"obs-{i}", i, {"k": [True, None, -i]}],
            data={"i": i, "name": f"entry {i}", "nested": {"z": [1, 2, {"ü": "ß"}], "a": i * 7}},
        ))
    return out


# -- raw access with the protection removed -------------------------------------------------------------
class RawDb:
    """A plain driver connection (sqlite3 / psycopg), autocommit, with ``?`` placeholders on both."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
        else:
            self.conn = psycopg.connect(url, autocommit=True)

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.conn.execute(self._sql(sql), tuple(params))
        return int(cur.rowcount)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.conn.execute(self._sql(sql), tuple(params)).fetchone()
        return None if row is None else tuple(row)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.sqlite:
            self.conn.executemany(sql, rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)

    def unprotect(self) -> None:
        """Remove the append-only protection as a database superuser could: SQLite drops the triggers,
        PostgreSQL switches this session to replica mode (triggers do not fire)."""
        if self.sqlite:
            for (name,) in self.fetchall("SELECT name FROM sqlite_master WHERE type='trigger'"):
                self.execute(f'DROP TRIGGER "{name}"')
        else:
            self.execute("SET session_replication_role = replica")

    def close(self) -> None:
        self.conn.close()


@contextmanager
def attacker(url: str) -> Iterator[RawDb]:
    """A raw connection with the protection removed; everything done in it commits as one transaction."""
    raw = RawDb(url)
    try:
        raw.unprotect()
        raw.execute("BEGIN")
        try:
            yield raw
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")
    finally:
        raw.close()


def rewrite_log(raw: RawDb, log: str, from_seq: int, signer: SigningKey | Callable[[int], SigningKey],
                change: Callable[[int, dict[str, Any]], None], *, resign_checkpoints: bool,
                checkpoint_signer: Callable[[str], SigningKey] | None = None, origin_prefix: str = "") -> None:
    """Rewrite entries ``from_seq``.. of ``log`` as an attacker holding the signing key(s) would: apply
    ``change`` to each payload, re-chain the parents, re-sign (``signer`` may name the key per seq),
    recompute the ids and every stored Merkle node; optionally re-sign the stored checkpoints too (each with
    ``checkpoint_signer(its key id)``, default the entry signer)."""
    sign_with = signer if callable(signer) else (lambda _seq: signer)
    rows = raw.fetchall("SELECT seq, payload FROM ledger_entries WHERE log=? ORDER BY seq", (log,))
    payloads = [bytes(p) for _, p in rows]
    parent: str | None = None if from_seq == 0 else entry_id(payloads[from_seq - 1])
    for seq in range(from_seq, len(payloads)):
        key = sign_with(seq)
        fields = orjson.loads(payloads[seq])
        change(seq, fields)
        fields["parent"] = parent
        fields["key_id"] = key.key_id
        payload = canonical_bytes(fields)
        payloads[seq] = payload
        parent = entry_id(payload)
        raw.execute("UPDATE ledger_entries SET payload=?, id=?, sig=?, ts_us=?, key_id=? WHERE log=? AND seq=?",
                    (payload, parent, key.sign(payload), fields["ts_us"], key.key_id, log, seq))
    frontier = Frontier()
    nodes: dict[tuple[int, int], bytes] = {}
    for payload in payloads:
        for level, idx, h in frontier.append(leaf_hash(payload)):
            nodes[(level, idx)] = h
    for (level, idx), h in nodes.items():
        if idx >= from_seq >> level:
            raw.execute("UPDATE ledger_nodes SET hash=? WHERE log=? AND level=? AND idx=?", (h, log, level, idx))
    if resign_checkpoints:
        for size, key_id in raw.fetchall("SELECT tree_size, key_id FROM ledger_checkpoints WHERE log=?", (log,)):
            size = int(size)
            if size <= from_seq:
                continue
            key = checkpoint_signer(str(key_id)) if checkpoint_signer else sign_with(size - 1)
            root = fold([nodes[k] for k in decompose(0, size)])
            cp = sign_checkpoint(origin_for(log, origin_prefix), size, root, key)
            raw.execute("UPDATE ledger_checkpoints SET root_hash=?, note=?, key_id=? WHERE log=? AND tree_size=?",
                        (root, cp.note, key.key_id, log, size))


def key_plan(raw: RawDb, log: str, keys_dir: Path) -> Callable[[int], SigningKey]:
    """The signing key valid at each seq of ``log`` (from ledger_key_use and the key files)."""
    uses = [(int(s), str(k)) for s, k in raw.fetchall(
        "SELECT valid_from_seq, key_id FROM ledger_key_use WHERE log=? ORDER BY valid_from_seq", (log,))]
    keys = {k: read_key(keys_dir, k) for _, k in uses}

    def at(seq: int) -> SigningKey:
        return keys[[k for s, k in uses if s <= seq][-1]]

    return at


TableDump = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def dump_ledger(url: str) -> TableDump:
    """Every row of every ledger table, to put back later with :func:`restore_ledger`."""
    raw = RawDb(url)
    try:
        out: TableDump = {}
        for table in LEDGER_TABLES:
            if raw.sqlite:
                cols = [str(r[1]) for r in raw.fetchall(f"PRAGMA table_info({table})")]
            else:
                cols = [str(r[0]) for r in raw.fetchall(
                    "SELECT column_name FROM information_schema.columns WHERE table_name=? ORDER BY ordinal_position",
                    (table,))]
            rows = sorted((tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                           for row in raw.fetchall(f"SELECT {', '.join(cols)} FROM {table}")), key=repr)
            out[table] = (cols, rows)
        return out
    finally:
        raw.close()


def restore_ledger(url: str, dump: TableDump) -> None:
    """Put every ledger table back exactly as dumped (protection off, one transaction)."""
    with attacker(url) as raw:
        for table in reversed(LEDGER_TABLES):
            raw.execute(f"DELETE FROM {table}")
        for table in LEDGER_TABLES:
            cols, rows = dump[table]
            raw.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)


def read_key(keys_dir: Path, key_id: str) -> SigningKey:
    return SigningKey.from_hex((keys_dir / f"{key_id}.key").read_text())


def copy_keys(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
