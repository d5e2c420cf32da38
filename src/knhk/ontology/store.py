"""SQL for the snapshot tables of migration 0004 (SPEC §4). No policy here: immutability checks, promotion
rules and gc selection live in :mod:`knhk.ontology.registry`; this module only moves rows.

Tables: ``snapshots`` (metadata, append-only), ``snapshot_contents`` (zlib-compressed canonical N-Quads;
a row may be deleted only while its snapshot was never promoted — enforced by trigger), ``snapshot_collections``
(append-only log of gc), ``snapshot_pointers`` (one current pointer per sector; moves one version at a time,
never deleted) and ``snapshot_history`` (append-only log of every pointer move).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from knhk.ontology.snapshot import ORIGINS, Origin, SnapshotInfo
from knhk.storage.database import Connection

INFO_COLUMNS = "id, sector, parent, content_digest, triple_count, created_us, origin, proposal_id"


@dataclass(frozen=True)
class Pointer:
    """The current snapshot of a sector and how many times the pointer has moved."""

    sector: str
    snapshot_id: str
    version: int
    updated_us: int


@dataclass(frozen=True)
class HistoryRow:
    """One move of a sector's pointer."""

    sector: str
    seq: int
    snapshot_id: str
    previous_id: str | None
    action: str  # root | promote | rollback
    forced: bool
    validation_receipt_id: str | None
    actor: str | None
    at_us: int

    def to_json(self) -> dict[str, object]:
        return {
            "sector": self.sector, "seq": self.seq, "snapshot_id": self.snapshot_id,
            "previous_id": self.previous_id, "action": self.action, "forced": self.forced,
            "validation_receipt_id": self.validation_receipt_id, "actor": self.actor, "at_us": self.at_us,
        }


def _origin(value: str) -> Origin:
    for origin in ORIGINS:
        if origin == value:
            return origin
    raise ValueError(f"stored snapshot origin {value!r} is unknown")


def _info(row: Sequence[Any]) -> SnapshotInfo:
    return SnapshotInfo(str(row[0]), str(row[1]), None if row[2] is None else str(row[2]), str(row[3]),
                        int(row[4]), int(row[5]), _origin(str(row[6])), None if row[7] is None else str(row[7]))


def compress(canonical: bytes) -> bytes:
    return zlib.compress(canonical, 6)


def decompress(blob: bytes) -> bytes:
    return zlib.decompress(blob)


# -- snapshots and contents -----------------------------------------------------------------------------
def insert_snapshot(conn: Connection, info: SnapshotInfo) -> bool:
    """Insert the metadata row; False when a row with this id already exists."""
    return conn.execute(
        f"INSERT INTO snapshots ({INFO_COLUMNS}) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
        (info.id, info.sector, info.parent, info.content_digest, info.triple_count, info.created_us, info.origin,
         info.proposal_id),
    ) > 0


def insert_content(conn: Connection, snapshot_id: str, blob: bytes) -> bool:
    return conn.execute(
        "INSERT INTO snapshot_contents (id, content) VALUES (?,?) ON CONFLICT (id) DO NOTHING",
        (snapshot_id, blob),
    ) > 0


def get_info(conn: Connection, snapshot_id: str) -> SnapshotInfo | None:
    row = conn.fetchone(f"SELECT {INFO_COLUMNS} FROM snapshots WHERE id=?", (snapshot_id,))
    return None if row is None else _info(row)


def get_content(conn: Connection, snapshot_id: str) -> bytes | None:
    row = conn.fetchone("SELECT content FROM snapshot_contents WHERE id=?", (snapshot_id,))
    return None if row is None else bytes(row[0])


def find_by_prefix(conn: Connection, prefix: str, limit: int = 2) -> list[str]:
    rows = conn.fetchall("SELECT id FROM snapshots WHERE id LIKE ? ORDER BY id LIMIT ?", (prefix + "%", limit))
    return [str(r[0]) for r in rows]


def collected_at(conn: Connection, snapshot_id: str) -> int | None:
    row = conn.fetchone("SELECT collected_us FROM snapshot_collections WHERE id=?", (snapshot_id,))
    return None if row is None else int(row[0])


def list_infos(conn: Connection, sector: str | None, limit: int,
               before: tuple[int, str] | None = None) -> list[SnapshotInfo]:
    """Newest first; ``before`` = (created_us, id) of the last row of the previous page."""
    where: list[str] = []
    params: list[Any] = []
    if sector is not None:
        where.append("sector=?")
        params.append(sector)
    if before is not None:
        where.append("(created_us < ? OR (created_us = ? AND id < ?))")
        params.extend((before[0], before[0], before[1]))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(limit)
    rows = conn.fetchall(
        f"SELECT {INFO_COLUMNS} FROM snapshots {clause} ORDER BY created_us DESC, id DESC LIMIT ?", params
    )
    return [_info(r) for r in rows]


def lineage(conn: Connection, snapshot_id: str) -> list[SnapshotInfo]:
    """The snapshot and its ancestors, up to the root, nearest first."""
    rows = conn.fetchall(
        f"WITH RECURSIVE chain(id, depth) AS ("
        f" SELECT id, 0 FROM snapshots WHERE id=?"
        f" UNION ALL SELECT s.parent, chain.depth + 1 FROM snapshots s JOIN chain ON s.id = chain.id"
        f" WHERE s.parent IS NOT NULL)"
        f" SELECT {', '.join('s.' + c.strip() for c in INFO_COLUMNS.split(','))}"
        f" FROM chain JOIN snapshots s ON s.id = chain.id ORDER BY chain.depth",
        (snapshot_id,),
    )
    return [_info(r) for r in rows]


def children(conn: Connection, snapshot_id: str) -> list[SnapshotInfo]:
    rows = conn.fetchall(
        f"SELECT {INFO_COLUMNS} FROM snapshots WHERE parent=? ORDER BY created_us, id", (snapshot_id,)
    )
    return [_info(r) for r in rows]


def edges_with_content(conn: Connection, sector: str) -> list[tuple[str, str | None, int]]:
    """(id, parent, created_us) of every snapshot of the sector whose content is still stored."""
    rows = conn.fetchall(
        "SELECT s.id, s.parent, s.created_us FROM snapshots s JOIN snapshot_contents c ON c.id = s.id"
        " WHERE s.sector=?",
        (sector,),
    )
    return [(str(r[0]), None if r[1] is None else str(r[1]), int(r[2])) for r in rows]


def sectors_with_snapshots(conn: Connection) -> list[str]:
    return [str(r[0]) for r in conn.fetchall("SELECT DISTINCT sector FROM snapshots ORDER BY sector")]


def delete_content(conn: Connection, snapshot_id: str) -> int:
    """Delete an unpromoted snapshot's content (the database refuses it for a promoted one)."""
    return conn.execute("DELETE FROM snapshot_contents WHERE id=?", (snapshot_id,))


def insert_collection(conn: Connection, snapshot_id: str, sector: str, collected_us: int) -> None:
    conn.execute(
        "INSERT INTO snapshot_collections (id, sector, collected_us) VALUES (?,?,?) ON CONFLICT (id) DO NOTHING",
        (snapshot_id, sector, collected_us),
    )


# -- pointers and history -------------------------------------------------------------------------------
def _pointer(row: Sequence[Any]) -> Pointer:
    return Pointer(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


def get_pointer(conn: Connection, sector: str) -> Pointer | None:
    row = conn.fetchone(
        "SELECT sector, snapshot_id, version, updated_us FROM snapshot_pointers WHERE sector=?", (sector,)
    )
    return None if row is None else _pointer(row)


def all_pointers(conn: Connection) -> list[Pointer]:
    rows = conn.fetchall("SELECT sector, snapshot_id, version, updated_us FROM snapshot_pointers ORDER BY sector")
    return [_pointer(r) for r in rows]


def insert_pointer(conn: Connection, sector: str, snapshot_id: str, at_us: int) -> bool:
    """Create a sector's pointer at version 0; False when the sector already has one."""
    return conn.execute(
        "INSERT INTO snapshot_pointers (sector, snapshot_id, version, updated_us) VALUES (?,?,0,?)"
        " ON CONFLICT (sector) DO NOTHING",
        (sector, snapshot_id, at_us),
    ) > 0


def move_pointer(conn: Connection, sector: str, expected: str, expected_version: int, new: str,
                 at_us: int) -> bool:
    """Compare-and-set: move the pointer from (``expected``, ``expected_version``) to ``new`` at the next
    version; False when the pointer is elsewhere."""
    return conn.execute(
        "UPDATE snapshot_pointers SET snapshot_id=?, version=?, updated_us=?"
        " WHERE sector=? AND snapshot_id=? AND version=?",
        (new, expected_version + 1, at_us, sector, expected, expected_version),
    ) > 0


def insert_history(conn: Connection, row: HistoryRow) -> None:
    conn.execute(
        "INSERT INTO snapshot_history (sector, seq, snapshot_id, previous_id, action, forced,"
        " validation_receipt_id, actor, at_us) VALUES (?,?,?,?,?,?,?,?,?)",
        (row.sector, row.seq, row.snapshot_id, row.previous_id, row.action, int(row.forced),
         row.validation_receipt_id, row.actor, row.at_us),
    )


def history(conn: Connection, sector: str, limit: int = 1000) -> list[HistoryRow]:
    rows = conn.fetchall(
        "SELECT sector, seq, snapshot_id, previous_id, action, forced, validation_receipt_id, actor, at_us"
        " FROM snapshot_history WHERE sector=? ORDER BY seq LIMIT ?",
        (sector, limit),
    )
    return [HistoryRow(str(r[0]), int(r[1]), str(r[2]), None if r[3] is None else str(r[3]), str(r[4]),
                       bool(r[5]), None if r[6] is None else str(r[6]), None if r[7] is None else str(r[7]),
                       int(r[8])) for r in rows]


def promoted_ids(conn: Connection, sector: str) -> set[str]:
    """Every snapshot the sector's pointer has ever named."""
    rows = conn.fetchall("SELECT DISTINCT snapshot_id FROM snapshot_history WHERE sector=?", (sector,))
    return {str(r[0]) for r in rows}


def ever_promoted(conn: Connection, snapshot_id: str) -> bool:
    return conn.fetchone("SELECT 1 FROM snapshot_history WHERE snapshot_id=? LIMIT 1", (snapshot_id,)) is not None
