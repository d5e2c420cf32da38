"""SQL for backups: the facts a manifest records, read from one consistent view of a store.

``read_state`` must run inside :meth:`Database.snapshot` (or on a store nobody writes to) so that the row
counts, log heads, roots and checkpoints it returns all describe one moment. What a backup counts is the whole
database (every table, from the catalogue, and the schema version); the ledger's and the observations' own rows
are read through their stores (:mod:`knhk.ledger.store`, :mod:`knhk.observations.store`).
"""

from __future__ import annotations

from knhk.backup.manifest import Checkpoint, LogState, StoreState
from knhk.ledger import receipts
from knhk.ledger import store as ledger_store
from knhk.observations import store as observation_store
from knhk.proof.entry import LOGS
from knhk.proof.merkle import EMPTY_ROOT, decompose, fold
from knhk.storage.database import Connection


def table_names(conn: Connection) -> list[str]:
    if conn.dialect == "sqlite":
        rows = conn.fetchall("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                             "ORDER BY name")
    else:
        # partitions are counted in their parent (observations), not one by one
        rows = conn.fetchall("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                             " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
                             " AND NOT c.relispartition ORDER BY c.relname")
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
    head = ledger_store.head(conn, log)
    size = 0 if head is None else head.tree_size
    keys = decompose(0, size)
    nodes = ledger_store.get_nodes(conn, log, keys)
    root = fold([nodes[k] for k in keys]) if all(k in nodes for k in keys) else b"\x00" * 32
    cp = ledger_store.latest_checkpoint(conn, log)
    checkpoint = None if cp is None else Checkpoint(tree_size=cp.tree_size, key_id=cp.key_id, note=cp.note)
    return LogState(tree_size=size, root_hash=(root if size else EMPTY_ROOT).hex(), checkpoint=checkpoint)


def read_state(conn: Connection) -> StoreState:
    tables = row_counts(conn)
    logs = {log: log_state(conn, log) for log in LOGS} if "ledger_entries" in tables else {}
    return StoreState(schema_version=schema_version(conn, tables), tables=tables, logs=logs)


def public_keys(conn: Connection) -> dict[str, bytes]:
    return {k.key_id: k.public_key for k in ledger_store.list_keys(conn)}


def backup_records(conn: Connection, backup_id: str) -> list[str]:
    """The manifest digests that ``backup.created`` and ``backup.restored`` audit entries record for this
    backup id (a restored store no longer holds the creation record, which was written after the backup, but
    holds the record of its own restore)."""
    found: list[tuple[int, str]] = []
    for action in (receipts.BACKUP_CREATED, receipts.BACKUP_RESTORED):
        after = -1
        while page := ledger_store.list_entries(conn, receipts.AUDIT, after_seq=after, limit=500, kind=action):
            after = page[-1].seq
            for entry in page:
                meta = entry.data.get("metadata") or {}
                if entry.data.get("resource") == f"backup/{backup_id}" and isinstance(meta.get("manifest_sha256"),
                                                                                      str):
                    found.append((entry.seq, meta["manifest_sha256"]))
    return [digest for _, digest in sorted(found)]


def is_empty(conn: Connection) -> bool:
    """True when the store holds no KNHK data (no tables, or no ledger entries and no observations)."""
    tables = table_names(conn)
    if "ledger_entries" in tables and any(ledger_store.head(conn, log) is not None for log in LOGS):
        return False
    return not ("observations" in tables and observation_store.any_observations(conn))
