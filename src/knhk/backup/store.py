"""SQL for backups: the facts a manifest records, read from one consistent view of a store.

``read_state`` must run inside :meth:`Database.snapshot` (or on a store nobody writes to) so that the row
counts, log heads, roots and checkpoints it returns all describe one moment.
"""

from __future__ import annotations

import orjson

from knhk.backup.manifest import Checkpoint, LogState, StoreState
from knhk.ledger.entry import LOGS
from knhk.ledger.merkle import EMPTY_ROOT, decompose, fold
from knhk.storage import ledger_store as sql
from knhk.storage.database import Connection


def table_names(conn: Connection) -> list[str]:
    if conn.dialect == "sqlite":
        rows = conn.fetchall("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                             "ORDER BY name")
    else:
        rows = conn.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
    return [str(r[0]) for r in rows]


def row_counts(conn: Connection) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in table_names(conn):
        row = conn.fetchone(f'SELECT COUNT(*) FROM "{name}"')
        out[name] = int(row[0]) if row else 0
    return out


def schema_version(conn: Connection, tables: dict[str, int]) -> int:
    if "schema_migrations" not in tables:
        return 0
    row = conn.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return int(row[0]) if row else 0


def log_state(conn: Connection, log: str) -> LogState:
    head = sql.head(conn, log)
    size = 0 if head is None else head.tree_size
    keys = decompose(0, size)
    nodes = sql.get_nodes(conn, log, keys)
    root = fold([nodes[k] for k in keys]) if all(k in nodes for k in keys) else b"\x00" * 32
    cp = sql.latest_checkpoint(conn, log)
    checkpoint = None if cp is None else Checkpoint(tree_size=cp.tree_size, key_id=cp.key_id, note=cp.note)
    return LogState(tree_size=size, root_hash=(root if size else EMPTY_ROOT).hex(), checkpoint=checkpoint)


def read_state(conn: Connection) -> StoreState:
    tables = row_counts(conn)
    logs = {log: log_state(conn, log) for log in LOGS} if "ledger_entries" in tables else {}
    return StoreState(schema_version=schema_version(conn, tables), tables=tables, logs=logs)


def public_keys(conn: Connection) -> dict[str, bytes]:
    return {k.key_id: k.public_key for k in sql.list_keys(conn)}


def backup_records(conn: Connection, backup_id: str) -> list[str]:
    """The manifest digests that ``backup.created`` and ``backup.restored`` audit entries record for this
    backup id (a restored store no longer holds the creation record, which was written after the backup, but
    holds the record of its own restore)."""
    rows = conn.fetchall("SELECT payload FROM ledger_entries WHERE log='audit' "
                         "AND kind IN ('backup.created', 'backup.restored') ORDER BY seq")
    out = []
    for (payload,) in rows:
        data = orjson.loads(bytes(payload)).get("data") or {}
        meta = data.get("metadata") or {}
        if data.get("resource") == f"backup/{backup_id}" and isinstance(meta.get("manifest_sha256"), str):
            out.append(meta["manifest_sha256"])
    return out


def is_empty(conn: Connection) -> bool:
    """True when the store holds no KNHK data (no tables, or no ledger entries and no observations)."""
    tables = table_names(conn)
    for name in ("ledger_entries", "observations"):
        if name in tables and conn.fetchone(f"SELECT 1 FROM {name} LIMIT 1") is not None:
            return False
    return True
