"""SQL of guard relaxations: the requests, their approvals, and each request's one mutable status row.

No policy here: the life cycle lives in :mod:`knhk.governance.relaxations`; this module only moves rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from knhk.storage.database import Connection


@dataclass(frozen=True)
class RelaxationRow:
    """A stored request with its current status (``granted`` rows carry their window)."""

    id: str
    sector: str
    guard_id: str
    criticality: str
    snapshot_id: str
    author: str  # pseudonym
    reason: str
    duration_s: int
    quorum: int
    min_review_s: int
    requested_us: int
    status: str
    starts_us: int | None
    ends_us: int | None
    note: str | None
    updated_us: int


@dataclass(frozen=True)
class DecisionRow:
    id: str
    relaxation_id: str
    subject: str
    roles: tuple[str, ...]
    sector_attr: str | None
    decision: str
    comment: str | None
    at_us: int


_COLS = ("r.id, r.sector, r.guard_id, r.criticality, r.snapshot_id, r.author, r.reason, r.duration_s, r.quorum, "
         "r.min_review_s, r.requested_us, s.status, s.starts_us, s.ends_us, s.note, s.updated_us")
_FROM = "FROM relaxations r JOIN relaxation_status s ON s.relaxation_id = r.id"


def _row(r: Sequence[Any]) -> RelaxationRow:
    return RelaxationRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]), int(r[7]),
                         int(r[8]), int(r[9]), int(r[10]), str(r[11]), None if r[12] is None else int(r[12]),
                         None if r[13] is None else int(r[13]), r[14], int(r[15]))


def insert(conn: Connection, r: RelaxationRow) -> None:
    conn.execute(
        "INSERT INTO relaxations (id, sector, guard_id, criticality, snapshot_id, author, reason, duration_s, quorum,"
        " min_review_s, requested_us) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (r.id, r.sector, r.guard_id, r.criticality, r.snapshot_id, r.author, r.reason, r.duration_s, r.quorum,
         r.min_review_s, r.requested_us))
    conn.execute("INSERT INTO relaxation_status (relaxation_id, sector, guard_id, status, starts_us, ends_us, note,"
                 " updated_us) VALUES (?,?,?,?,?,?,?,?)",
                 (r.id, r.sector, r.guard_id, r.status, r.starts_us, r.ends_us, r.note, r.updated_us))


def get(conn: Connection, relaxation_id: str) -> RelaxationRow | None:
    row = conn.fetchone(f"SELECT {_COLS} {_FROM} WHERE r.id=?", (relaxation_id,))
    return None if row is None else _row(row)


def find(conn: Connection, *, sector: str | None = None, statuses: Sequence[str] | None = None,
         guard_id: str | None = None, limit: int = 100) -> list[RelaxationRow]:
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if sector is not None:
        where.append("s.sector=?")
        params.append(sector)
    if guard_id is not None:
        where.append("s.guard_id=?")
        params.append(guard_id)
    if statuses:
        where.append(f"s.status IN ({','.join('?' for _ in statuses)})")
        params.extend(statuses)
    params.append(limit)
    rows = conn.fetchall(f"SELECT {_COLS} {_FROM} WHERE {' AND '.join(where)} ORDER BY r.requested_us DESC, r.id "
                         "LIMIT ?", params)
    return [_row(r) for r in rows]


def windows(conn: Connection, sector: str) -> list[tuple[str, int, int]]:
    """(guard id, starts, ends) of the sector's granted relaxations: what the hot path consults."""
    rows = conn.fetchall("SELECT guard_id, starts_us, ends_us FROM relaxation_status WHERE sector=? AND "
                         "status='granted'", (sector,))
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


def set_status(conn: Connection, relaxation_id: str, *, expected: str, status: str, now_us: int,
               note: str | None = None, starts_us: int | None = None, ends_us: int | None = None) -> bool:
    """Move a request from ``expected`` to ``status`` (compare-and-set); False when it had moved already."""
    updated = conn.execute(
        "UPDATE relaxation_status SET status=?, note=COALESCE(?, note), starts_us=COALESCE(?, starts_us), "
        "ends_us=COALESCE(?, ends_us), updated_us=? WHERE relaxation_id=? AND status=?",
        (status, note, starts_us, ends_us, now_us, relaxation_id, expected))
    return updated == 1


def insert_decision(conn: Connection, d: DecisionRow) -> bool:
    """Record a decision; False when this subject has decided on this request before."""
    if conn.fetchone("SELECT 1 FROM relaxation_approvals WHERE relaxation_id=? AND subject=?",
                     (d.relaxation_id, d.subject)):
        return False
    conn.execute("INSERT INTO relaxation_approvals (id, relaxation_id, subject, roles, sector_attr, decision, comment,"
                 " at_us) VALUES (?,?,?,?,?,?,?,?)",
                 (d.id, d.relaxation_id, d.subject, orjson.dumps(sorted(d.roles)).decode(), d.sector_attr,
                  d.decision, d.comment, d.at_us))
    return True


def decisions(conn: Connection, relaxation_id: str) -> list[DecisionRow]:
    rows = conn.fetchall("SELECT id, relaxation_id, subject, roles, sector_attr, decision, comment, at_us FROM "
                         "relaxation_approvals WHERE relaxation_id=? ORDER BY at_us, id", (relaxation_id,))
    return [DecisionRow(str(r[0]), str(r[1]), str(r[2]), tuple(orjson.loads(r[3])), r[4], str(r[5]), r[6], int(r[7]))
            for r in rows]
