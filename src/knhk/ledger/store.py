"""SQL of the ledger's tables (``ledger_entries``, ``ledger_nodes``, ``ledger_checkpoints``, ``ledger_keys``,
``ledger_key_use``, ``evidence_sets``, ``ledger_outbox``). No policy here: sequencing, signing and checks live in
:mod:`knhk.ledger`; this module only moves rows in and out, in as few round trips as possible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from knhk.ops.clock import format_rfc3339
from knhk.proof.entry import Entry
from knhk.proof.merkle import NodeKey
from knhk.proof.signing import PublicKey
from knhk.storage.database import Connection


@dataclass(frozen=True)
class Head:
    """The last entry of a log."""

    seq: int
    id: str
    ts_us: int

    @property
    def tree_size(self) -> int:
        return self.seq + 1


@dataclass(frozen=True)
class StoredCheckpoint:
    log: str
    tree_size: int
    root_hash: bytes
    note: str
    key_id: str
    issued_us: int

    def to_json(self) -> dict[str, Any]:
        """The checkpoint as the API and CLI show it (the signed note is the checkpoint itself)."""
        return {"log": self.log, "tree_size": self.tree_size, "root_hash": self.root_hash.hex(),
                "key_id": self.key_id, "issued": format_rfc3339(self.issued_us), "note": self.note}


ENTRY_COLUMNS = "log, seq, id, ts_us, kind, sector, subject, key_id, payload, sig"


def head(conn: Connection, log: str) -> Head | None:
    row = conn.fetchone("SELECT seq, id, ts_us FROM ledger_entries WHERE log=? ORDER BY seq DESC LIMIT 1", (log,))
    return None if row is None else Head(int(row[0]), str(row[1]), int(row[2]))


_ENTRY_COLUMN_LIST = tuple(c.strip() for c in ENTRY_COLUMNS.split(","))


def insert_entries(conn: Connection, entries: Sequence[Entry]) -> None:
    conn.insert_rows(
        "ledger_entries", _ENTRY_COLUMN_LIST,
        [
            (e.log, e.seq, e.id, e.ts_us, e.kind, e.sector, e.subject, e.key_id, e.payload, e.sig)
            for e in entries
        ],
    )


def insert_nodes(conn: Connection, log: str, nodes: Iterable[tuple[int, int, bytes]]) -> None:
    conn.insert_rows("ledger_nodes", ("log", "level", "idx", "hash"), [(log, level, idx, h) for level, idx, h in nodes])


SMALL_BATCH = 256  # entries a PostgreSQL batch writes in one statement with its nodes; larger ones by COPY
_ENTRIES_AND_NODES_PG = (
    f"WITH e AS (INSERT INTO ledger_entries ({ENTRY_COLUMNS}) SELECT * FROM unnest(?::text[], ?::bigint[],"
    " ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bytea[], ?::bytea[]))"
    " INSERT INTO ledger_nodes (log, level, idx, hash) SELECT ?, * FROM unnest(?::smallint[], ?::bigint[],"
    " ?::bytea[])"
)


def insert_entries_and_nodes(conn: Connection, log: str, entries: Sequence[Entry],
                             nodes: Sequence[tuple[int, int, bytes]]) -> None:
    """:func:`insert_entries` and :func:`insert_nodes` of one log's batch; on PostgreSQL a small batch in one
    statement (one round trip instead of two ``COPY`` exchanges of two each)."""
    if conn.dialect != "postgresql" or len(entries) > SMALL_BATCH:
        insert_entries(conn, entries)
        insert_nodes(conn, log, nodes)
        return
    conn.execute(_ENTRIES_AND_NODES_PG, (
        [e.log for e in entries], [e.seq for e in entries], [e.id for e in entries], [e.ts_us for e in entries],
        [e.kind for e in entries], [e.sector for e in entries], [e.subject for e in entries],
        [e.key_id for e in entries], [e.payload for e in entries], [e.sig for e in entries],
        log, [n[0] for n in nodes], [n[1] for n in nodes], [n[2] for n in nodes]))


def get_nodes(conn: Connection, log: str, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    """Fetch the named Merkle nodes in one query (one primary-key lookup per node).

    SQLite: a UNION ALL of point lookups (an OR of (level, idx) pairs with bound parameters makes its
    planner scan the whole log). PostgreSQL: a join with the unnested key arrays (one small plan whatever
    the number of keys, instead of a bitmap OR of dozens of index scans).
    """
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    out: dict[NodeKey, bytes] = {}
    if conn.dialect == "postgresql":
        rows = conn.fetchall(
            "SELECT n.level, n.idx, n.hash FROM unnest(?::smallint[], ?::bigint[]) AS k(level, idx)"
            " JOIN ledger_nodes n ON n.log = ? AND n.level = k.level AND n.idx = k.idx",
            ([lvl for lvl, _ in wanted], [idx for _, idx in wanted], log),
        )
        return {(int(level), int(idx)): bytes(h) for level, idx, h in rows}
    point = "SELECT level, idx, hash FROM ledger_nodes WHERE log=? AND level=? AND idx=?"
    for start in range(0, len(wanted), 400):  # SQLite allows 500 terms in a compound SELECT
        chunk = wanted[start:start + 400]
        params: list[Any] = []
        for level, idx in chunk:
            params.extend((log, level, idx))
        for level, idx, h in conn.fetchall(" UNION ALL ".join([point] * len(chunk)), params):
            out[(int(level), int(idx))] = bytes(h)
    return out


def nodes_in_range(conn: Connection, log: str, level: int, first: int, last: int) -> list[tuple[int, bytes]]:
    rows = conn.fetchall(
        "SELECT idx, hash FROM ledger_nodes WHERE log=? AND level=? AND idx>=? AND idx<? ORDER BY idx",
        (log, level, first, last),
    )
    return [(int(i), bytes(h)) for i, h in rows]


def node_hashes_in_range(conn: Connection, log: str, level: int, first: int, last: int) -> list[bytes]:
    """The stored hashes of nodes [first, last) of one level, in index order, without their indexes: (log,
    level, idx) is the primary key, so when ``last - first`` come back they are exactly those nodes."""
    rows = conn.fetchall(
        "SELECT hash FROM ledger_nodes WHERE log=? AND level=? AND idx>=? AND idx<? ORDER BY idx",
        (log, level, first, last),
    )
    return [h if type(h) is bytes else bytes(h) for (h,) in rows]


def nodes_beyond(conn: Connection, log: str, size: int) -> list[NodeKey]:
    """Stored nodes that cover a leaf at or beyond ``size`` (there must be none): node (level, idx) covers
    leaves up to (idx+1)·2^level, so it belongs to a tree of ``size`` leaves only if idx < size >> level."""
    top = max(size.bit_length(), 1)
    out: list[NodeKey] = []
    for level in range(top + 1):
        row = conn.fetchone("SELECT idx FROM ledger_nodes WHERE log=? AND level=? AND idx>=? ORDER BY idx LIMIT 1",
                            (log, level, size >> level))
        if row is not None:
            out.append((level, int(row[0])))
    row = conn.fetchone("SELECT level, idx FROM ledger_nodes WHERE log=? AND level>? LIMIT 1", (log, top))
    if row is not None:
        out.append((int(row[0]), int(row[1])))
    return out


def stored_node_levels(conn: Connection, log: str) -> list[int]:
    return [int(r[0]) for r in conn.fetchall("SELECT DISTINCT level FROM ledger_nodes WHERE log=?", (log,))]


def _entry(row: Sequence[Any]) -> Entry:
    return Entry.from_stored(bytes(row[0]), str(row[1]), bytes(row[2]))


def get_entry(conn: Connection, log: str, seq: int) -> Entry | None:
    row = conn.fetchone("SELECT payload, id, sig FROM ledger_entries WHERE log=? AND seq=?", (log, seq))
    return None if row is None else _entry(row)


def get_entry_by_id(conn: Connection, entry_id: str) -> Entry | None:
    row = conn.fetchone("SELECT payload, id, sig FROM ledger_entries WHERE id=?", (entry_id,))
    return None if row is None else _entry(row)


def list_entries(
    conn: Connection,
    log: str,
    *,
    after_seq: int = -1,
    limit: int = 100,
    kind: str | None = None,
    sector: str | None = None,
    descending: bool = False,
    before_seq: int | None = None,
    subject: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
) -> list[Entry]:
    where = ["log=?"]
    params: list[Any] = [log]
    if descending:
        if before_seq is not None:
            where.append("seq<?")
            params.append(before_seq)
    else:
        where.append("seq>?")
        params.append(after_seq)
    if kind is not None:
        where.append("kind=?")
        params.append(kind)
    if sector is not None:
        where.append("sector=?")
        params.append(sector)
    if subject is not None:
        where.append("subject=?")
        params.append(subject)
    if since_us is not None:
        where.append("ts_us>=?")
        params.append(since_us)
    if until_us is not None:
        where.append("ts_us<?")
        params.append(until_us)
    order = "DESC" if descending else "ASC"
    params.append(limit)
    rows = conn.fetchall(
        f"SELECT payload, id, sig FROM ledger_entries WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?",
        params,
    )
    return [_entry(r) for r in rows]


def raw_rows(conn: Connection, log: str, first: int, last: int) -> list[tuple[Any, ...]]:
    """Every stored column of entries [first, last), for the verifier."""
    return conn.fetchall(
        f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE log=? AND seq>=? AND seq<? ORDER BY seq",
        (log, first, last),
    )


def negative_seqs(conn: Connection, log: str, limit: int = 10) -> list[int]:
    """Seqs below zero (only a damaged log has any)."""
    rows = conn.fetchall("SELECT seq FROM ledger_entries WHERE log=? AND seq<0 ORDER BY seq LIMIT ?", (log, limit))
    return [int(r[0]) for r in rows]


def occupied_chunks(conn: Connection, log: str, level: int) -> list[int]:
    """The chunks (seq >> level) that hold at least one entry, found by one index probe per chunk."""
    out: list[int] = []
    start = 0
    while True:
        row = conn.fetchone("SELECT MIN(seq) FROM ledger_entries WHERE log=? AND seq>=?", (log, start))
        if row is None or row[0] is None:
            return out
        chunk = int(row[0]) >> level
        out.append(chunk)
        start = (chunk + 1) << level


def count_entries(conn: Connection, log: str) -> int:
    row = conn.fetchone("SELECT COUNT(*) FROM ledger_entries WHERE log=?", (log,))
    return int(row[0]) if row else 0


def count_mentions(conn: Connection, log: str, text: str) -> int:
    """How many entries of ``log`` name ``text`` as their subject or contain it anywhere in their payload."""
    contains = "instr(payload, ?) > 0" if conn.dialect == "sqlite" else "position(?::bytea in payload) > 0"
    row = conn.fetchone(f"SELECT COUNT(*) FROM ledger_entries WHERE log=? AND (subject=? OR {contains})",
                        (log, text, text.encode()))
    return int(row[0]) if row else 0


# -- checkpoints ----------------------------------------------------------------------------------------
def insert_checkpoint(conn: Connection, cp: StoredCheckpoint) -> None:
    conn.execute(
        "INSERT INTO ledger_checkpoints (log, tree_size, root_hash, note, key_id, issued_us) VALUES (?,?,?,?,?,?)"
        " ON CONFLICT (log, tree_size) DO NOTHING",
        (cp.log, cp.tree_size, cp.root_hash, cp.note, cp.key_id, cp.issued_us),
    )


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(str(row[0]), int(row[1]), bytes(row[2]), str(row[3]), str(row[4]), int(row[5]))


def latest_checkpoint(conn: Connection, log: str) -> StoredCheckpoint | None:
    row = conn.fetchone(
        "SELECT log, tree_size, root_hash, note, key_id, issued_us FROM ledger_checkpoints WHERE log=?"
        " ORDER BY tree_size DESC LIMIT 1",
        (log,),
    )
    return None if row is None else _checkpoint(row)


def get_checkpoint(conn: Connection, log: str, tree_size: int) -> StoredCheckpoint | None:
    row = conn.fetchone(
        "SELECT log, tree_size, root_hash, note, key_id, issued_us FROM ledger_checkpoints"
        " WHERE log=? AND tree_size=?",
        (log, tree_size),
    )
    return None if row is None else _checkpoint(row)


def list_checkpoints(conn: Connection, log: str) -> list[StoredCheckpoint]:
    rows = conn.fetchall(
        "SELECT log, tree_size, root_hash, note, key_id, issued_us FROM ledger_checkpoints WHERE log=?"
        " ORDER BY tree_size",
        (log,),
    )
    return [_checkpoint(r) for r in rows]


# -- keyring --------------------------------------------------------------------------------------------
def list_keys(conn: Connection) -> list[PublicKey]:
    rows = conn.fetchall("SELECT key_id, public_key, created_us, retired_us FROM ledger_keys ORDER BY created_us")
    return [PublicKey(str(r[0]), bytes(r[1]), int(r[2]), None if r[3] is None else int(r[3])) for r in rows]


def active_key_id(conn: Connection) -> str | None:
    row = conn.fetchone(
        "SELECT key_id FROM ledger_keys WHERE retired_us IS NULL ORDER BY created_us DESC LIMIT 1"
    )
    return None if row is None else str(row[0])


def insert_key(conn: Connection, key_id: str, public_key: bytes, created_us: int) -> None:
    conn.execute(
        "INSERT INTO ledger_keys (key_id, public_key, created_us) VALUES (?,?,?) ON CONFLICT (key_id) DO NOTHING",
        (key_id, public_key, created_us),
    )


def retire_keys_except(conn: Connection, key_id: str, retired_us: int) -> None:
    conn.execute("UPDATE ledger_keys SET retired_us=? WHERE retired_us IS NULL AND key_id<>?", (retired_us, key_id))


def key_uses(conn: Connection, log: str) -> list[tuple[int, str]]:
    rows = conn.fetchall(
        "SELECT valid_from_seq, key_id FROM ledger_key_use WHERE log=? ORDER BY valid_from_seq", (log,)
    )
    return [(int(r[0]), str(r[1])) for r in rows]


def last_key_use(conn: Connection, log: str) -> tuple[int, str] | None:
    row = conn.fetchone(
        "SELECT valid_from_seq, key_id FROM ledger_key_use WHERE log=? ORDER BY valid_from_seq DESC LIMIT 1",
        (log,),
    )
    return None if row is None else (int(row[0]), str(row[1]))


def insert_key_use(conn: Connection, log: str, valid_from_seq: int, key_id: str) -> None:
    conn.execute(
        "INSERT INTO ledger_key_use (log, valid_from_seq, key_id) VALUES (?,?,?)", (log, valid_from_seq, key_id)
    )


# -- evidence sets (migration 0007): the members of a receipt's truncated evidence, by commitment root --------
@dataclass(frozen=True)
class StoredEvidenceSet:
    root: str
    sector: str | None
    count: int
    encoding: str
    members: bytes


def put_evidence_set(conn: Connection, root: str, sector: str | None, count: int, encoding: str, members: bytes,
                     now_us: int) -> None:
    """Store an evidence set unless its root is already stored (content-addressed: it is the same set)."""
    conn.execute("INSERT INTO evidence_sets (root, sector, count, encoding, members, created_us) VALUES"
                 " (?,?,?,?,?,?) ON CONFLICT (root) DO NOTHING", (root, sector, count, encoding, members, now_us))


def get_evidence_set(conn: Connection, root: str) -> StoredEvidenceSet | None:
    row = conn.fetchone("SELECT root, sector, count, encoding, members FROM evidence_sets WHERE root=?", (root,))
    if row is None:
        return None
    return StoredEvidenceSet(str(row[0]), None if row[1] is None else str(row[1]), int(row[2]), str(row[3]),
                             bytes(row[4]))


# -- the outbox (migration 0014): drafts staged in another concept's transaction, drained by the sequencer -----
@dataclass(frozen=True)
class OutboxRow:
    id: int
    log: str
    draft: str  # the entry draft as JSON (knhk.ledger.outbox encodes and decodes it)
    count: int | None  # None: one entry; else a count, summed with the pending rows of an equal draft


_OUTBOX_RECORD = "log text, draft text, count bigint, due_us bigint, created_us bigint, origin text"
_OUTBOX_NAMES = tuple(c.split()[0] for c in _OUTBOX_RECORD.split(","))


def stage_outbox(conn: Connection, rows: Sequence[tuple[str, str, int | None, int, int, str]]) -> list[int]:
    """Insert outbox rows (log, draft, count, due_us, created_us, origin) in the caller's transaction; their ids,
    in order. SQLite: the write lock is held, so the new rowids follow the largest one (rows are never deleted)."""
    if not rows:
        return []
    if conn.dialect == "postgresql":
        document = orjson.dumps([dict(zip(_OUTBOX_NAMES, row, strict=True)) for row in rows]).decode()
        returned = conn.fetchall(f"INSERT INTO ledger_outbox ({', '.join(_OUTBOX_NAMES)}) SELECT * FROM"
                                 f" json_to_recordset(?::json) AS r({_OUTBOX_RECORD}) RETURNING id", (document,))
        return sorted(int(r[0]) for r in returned)
    top = conn.fetchone("SELECT COALESCE(MAX(id), 0) FROM ledger_outbox")
    first = int(top[0]) + 1 if top else 1
    conn.executemany(f"INSERT INTO ledger_outbox ({', '.join(_OUTBOX_NAMES)}) VALUES (?,?,?,?,?,?)", rows)
    return list(range(first, first + len(rows)))


def outbox_due(conn: Connection, now_us: int, limit: int, origin: str | None = None) -> list[OutboxRow]:
    """Pending rows due by ``now_us`` (and every pending row staged by ``origin``), oldest first."""
    where = "seq IS NULL AND due_us <= ?" if origin is None else "seq IS NULL AND (due_us <= ? OR origin = ?)"
    params: list[Any] = [now_us] if origin is None else [now_us, origin]
    rows = conn.fetchall(f"SELECT id, log, draft, count FROM ledger_outbox WHERE {where} ORDER BY id LIMIT ?",
                         [*params, limit])
    return [OutboxRow(int(r[0]), str(r[1]), str(r[2]), None if r[3] is None else int(r[3])) for r in rows]


def any_outbox_due(conn: Connection, now_us: int) -> bool:
    return conn.fetchone("SELECT 1 FROM ledger_outbox WHERE seq IS NULL AND due_us <= ? LIMIT 1",
                         (now_us,)) is not None


def mark_outbox(conn: Connection, marks: Sequence[tuple[int, int]]) -> None:
    """Set each drained row's seq, (id, seq) pairs, in the transaction that inserts the entries."""
    if not marks:
        return
    if conn.dialect == "postgresql":
        document = orjson.dumps([{"id": i, "seq": s} for i, s in marks]).decode()
        conn.execute("UPDATE ledger_outbox AS o SET seq = r.seq FROM json_to_recordset(?::json) AS r(id bigint,"
                     " seq bigint) WHERE o.id = r.id AND o.seq IS NULL", (document,))
        return
    conn.executemany("UPDATE ledger_outbox SET seq=? WHERE id=? AND seq IS NULL", [(s, i) for i, s in marks])


def outbox_seqs(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
    """(log, seq or None while pending) of the outbox rows ``ids``."""
    out: dict[int, tuple[str, int | None]] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        rows = conn.fetchall(f"SELECT id, log, seq FROM ledger_outbox WHERE id IN ({','.join('?' * len(chunk))})",
                             chunk)
        out.update({int(r[0]): (str(r[1]), None if r[2] is None else int(r[2])) for r in rows})
    return out


def count_outbox_pending(conn: Connection) -> int:
    row = conn.fetchone("SELECT COUNT(*) FROM ledger_outbox WHERE seq IS NULL")
    return int(row[0]) if row else 0
