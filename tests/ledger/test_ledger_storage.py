"""The database itself keeps the ledger append-only, whoever connects, on SQLite and PostgreSQL.

Proves: from a plain driver connection (sqlite3 / psycopg, not KNHK's code), UPDATE, DELETE, TRUNCATE
(PostgreSQL) and the sneakier overwrites (SQLite ``INSERT OR REPLACE``, which deletes without firing delete
triggers; PostgreSQL ``INSERT … ON CONFLICT DO UPDATE``) are refused on every ledger table, and leave every
row as it was; the keyring only lets an unset retirement time be set, once; the ledger still verifies
afterwards.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ledger_support import LEDGER_TABLES, RawDb, open_runtime, sample_drafts

KEYS = {
    "ledger_entries": ("log", "seq"),
    "ledger_nodes": ("log", "level", "idx"),
    "ledger_checkpoints": ("log", "tree_size"),
    "ledger_keys": ("key_id",),
    "ledger_key_use": ("log", "valid_from_seq"),
}
CHANGE = {  # a column and a new value for an UPDATE attempt
    "ledger_entries": ("payload", b"{}"),
    "ledger_nodes": ("hash", b"\x00" * 32),
    "ledger_checkpoints": ("note", "forged"),
    "ledger_keys": ("public_key", b"\x01" * 32),
    "ledger_key_use": ("key_id", "0000000000000000"),
}
REFUSED = (sqlite3.DatabaseError, psycopg.Error)


@pytest.fixture
def populated(tmp_path: Path, database_url: str) -> str:
    rt = open_runtime(database_url, tmp_path / "data", checkpoint_every_entries=20)
    try:
        rt.ledger.append_many(sample_drafts(30))
        rt.ledger.append_many(sample_drafts(10, log="audit"))
        rt.ledger.rotate_key()  # two keys, one retired; key uses; closing checkpoints
        rt.ledger.append_many(sample_drafts(5, start=30))
        assert rt.ledger.verify("receipts").ok
    finally:
        rt.close()
    return database_url


def _dump(raw: RawDb) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in LEDGER_TABLES:
        rows = raw.fetchall(f"SELECT * FROM {table} ORDER BY {', '.join(KEYS[table])}")
        out[table] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
    return out


def _where(table: str, row: dict[str, Any]) -> tuple[str, list[Any]]:
    cols = KEYS[table]
    return " AND ".join(f"{c}=?" for c in cols), [row[c] for c in cols]


def _refused(raw: RawDb, sql: str, params: Any = ()) -> str:
    with pytest.raises(REFUSED) as info:
        raw.execute(sql, params)
    return str(info.value)


def _row(raw: RawDb, table: str) -> dict[str, Any]:
    cols = [c for c in KEYS[table]]
    row = raw.fetchone(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(cols)} LIMIT 1")
    assert row is not None
    return dict(zip(cols, row, strict=True))


def test_update_delete_truncate_and_overwrite_are_refused_on_every_table(populated: str, tmp_path: Path) -> None:
    raw = RawDb(populated)
    try:
        before = _dump(raw)
        assert all(before[t] for t in LEDGER_TABLES)
        for table in LEDGER_TABLES:
            row = _row(raw, table)
            where, params = _where(table, row)
            column, value = CHANGE[table]
            message = _refused(raw, f"UPDATE {table} SET {column}=? WHERE {where}", [value, *params])
            assert "append-only" in message or "only an unset retirement time" in message
            assert "append-only" in _refused(raw, f"DELETE FROM {table} WHERE {where}", params) or \
                table == "ledger_keys"
            _refused(raw, f"DELETE FROM {table}")
            if raw.sqlite:
                cols = [c for (_, c, *_rest) in raw.fetchall(f"PRAGMA table_info({table})")]
                _refused_or_ignored(raw, table, cols, where, params)
            else:
                _refused(raw, f"TRUNCATE {table}")
                _refused(raw, f"TRUNCATE {table} CASCADE")
                _refused(raw, f"INSERT INTO {table} SELECT * FROM {table} WHERE {where} "
                              f"ON CONFLICT ({', '.join(KEYS[table])}) DO UPDATE SET {column}=?",
                         [*params, value])
        _refused(raw, "DELETE FROM ledger_entries WHERE seq >= 0")
        assert _dump(raw) == before
    finally:
        raw.close()
    rt = open_runtime(populated, tmp_path / "data")
    try:
        assert rt.ledger.verify("receipts").ok
        assert rt.ledger.verify("audit").ok
    finally:
        rt.close()


def _refused_or_ignored(raw: RawDb, table: str, cols: list[str], where: str, params: list[Any]) -> None:
    """SQLite's INSERT OR REPLACE on an existing key: refused (entries, nodes, key uses) or a no-op
    (checkpoints, keys); either way the stored row survives (checked by the caller's dump)."""
    column, value = CHANGE[table]
    select = ", ".join("?" if c == column else c for c in cols)
    sql = f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) SELECT {select} FROM {table} WHERE {where}"
    if table in ("ledger_checkpoints", "ledger_keys"):
        assert raw.execute(sql, [value, *params]) in (0, -1, 1)
    else:
        assert "append-only" in _refused(raw, sql, [value, *params])


def test_keys_only_allow_setting_an_unset_retirement_once(populated: str) -> None:
    raw = RawDb(populated)
    try:
        keys = raw.fetchall("SELECT key_id, retired_us FROM ledger_keys ORDER BY created_us")
        assert len(keys) == 2
        (old_id, old_retired), (new_id, new_retired) = keys
        assert old_retired is not None
        assert new_retired is None
        for sql, params in [
            ("UPDATE ledger_keys SET retired_us=? WHERE key_id=?", (1, old_id)),  # already retired
            ("UPDATE ledger_keys SET retired_us=NULL WHERE key_id=?", (old_id,)),  # un-retire
            ("UPDATE ledger_keys SET public_key=? WHERE key_id=?", (b"\x02" * 32, new_id)),
            ("UPDATE ledger_keys SET created_us=created_us+1 WHERE key_id=?", (new_id,)),
            ("UPDATE ledger_keys SET key_id=? WHERE key_id=?", ("ffffffffffffffff", new_id)),
            ("UPDATE ledger_keys SET retired_us=?, public_key=? WHERE key_id=?", (5, b"\x02" * 32, new_id)),
            ("DELETE FROM ledger_keys WHERE key_id=?", (old_id,)),
        ]:
            _refused(raw, sql, params)
        assert raw.execute("UPDATE ledger_keys SET retired_us=? WHERE key_id=?", (123, new_id)) == 1
        _refused(raw, "UPDATE ledger_keys SET retired_us=? WHERE key_id=?", (456, new_id))
        assert raw.fetchall("SELECT key_id, retired_us FROM ledger_keys ORDER BY created_us") == [
            (old_id, old_retired), (new_id, 123)]
    finally:
        raw.close()
