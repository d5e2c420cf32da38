"""SQL for evidence sets (table ``evidence_sets``, migration 0007) and for reading the observation rows an
evidence commitment names. No policy here: commitments are :mod:`knhk.ledger.evidence`, their checking
:mod:`knhk.observations.evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from knhk.observations.model import Observation
from knhk.storage.database import Connection
from knhk.storage.observation_store import COLUMNS, _observation, find_by_ids

_CHUNK = 500


@dataclass(frozen=True)
class StoredSet:
    root: str
    sector: str | None
    count: int
    encoding: str
    members: bytes


def put_set(conn: Connection, root: str, sector: str | None, count: int, encoding: str, members: bytes,
            now_us: int) -> None:
    """Store an evidence set unless its root is already stored (content-addressed: the same set)."""
    conn.execute("INSERT INTO evidence_sets (root, sector, count, encoding, members, created_us) VALUES"
                 " (?,?,?,?,?,?) ON CONFLICT (root) DO NOTHING", (root, sector, count, encoding, members, now_us))


def get_set(conn: Connection, root: str) -> StoredSet | None:
    row = conn.fetchone("SELECT root, sector, count, encoding, members FROM evidence_sets WHERE root=?", (root,))
    if row is None:
        return None
    return StoredSet(str(row[0]), None if row[1] is None else str(row[1]), int(row[2]), str(row[3]), bytes(row[4]))


def observations_by_seq(conn: Connection, seqs: Sequence[int]) -> dict[int, Observation]:
    """The stored observations among the ingest sequence numbers ``seqs``, by seq."""
    out: dict[int, Observation] = {}
    if conn.dialect == "postgresql":
        rows = conn.fetchall(f"SELECT {COLUMNS} FROM observations WHERE seq IN"
                             " (SELECT json_array_elements_text(?::json)::bigint)",
                             (orjson.dumps(list(seqs)).decode(),))
    else:
        rows = []
        for start in range(0, len(seqs), _CHUNK):
            chunk = list(seqs[start:start + _CHUNK])
            rows.extend(conn.fetchall(f"SELECT {COLUMNS} FROM observations WHERE seq IN"
                                      f" ({','.join('?' * len(chunk))})", chunk))
    for row in rows:
        obs = _observation(row)
        assert obs.seq is not None
        out[obs.seq] = obs
    return out


def observations_by_id(conn: Connection, ids: Sequence[str]) -> dict[str, Observation]:
    return find_by_ids(conn, ids)
