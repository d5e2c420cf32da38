"""SQL of the ``detector_thresholds`` table (learned confidence thresholds). No policy here: learning lives in
:mod:`knhk.detection.learning` and :mod:`knhk.detection.thresholds`; this module only moves rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from knhk.storage.database import Connection


@dataclass(frozen=True)
class StoredThreshold:
    sector: str
    pattern_type: str
    threshold_milli: int
    accepted: int
    rejected: int
    updated_us: int


def _threshold(row: Sequence[Any]) -> StoredThreshold:
    return StoredThreshold(str(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]))


def get_threshold(conn: Connection, sector: str, pattern_type: str) -> StoredThreshold | None:
    row = conn.fetchone(
        "SELECT sector, pattern_type, threshold_milli, accepted, rejected, updated_us FROM detector_thresholds"
        " WHERE sector=? AND pattern_type=?",
        (sector, pattern_type),
    )
    return None if row is None else _threshold(row)


def list_thresholds(conn: Connection, sector: str | None = None) -> list[StoredThreshold]:
    sql = ("SELECT sector, pattern_type, threshold_milli, accepted, rejected, updated_us FROM detector_thresholds")
    if sector is None:
        rows = conn.fetchall(sql + " ORDER BY sector, pattern_type")
    else:
        rows = conn.fetchall(sql + " WHERE sector=? ORDER BY pattern_type", (sector,))
    return [_threshold(r) for r in rows]


def put_threshold(conn: Connection, t: StoredThreshold) -> None:
    conn.execute(
        "INSERT INTO detector_thresholds (sector, pattern_type, threshold_milli, accepted, rejected, updated_us)"
        " VALUES (?,?,?,?,?,?) ON CONFLICT (sector, pattern_type) DO UPDATE SET"
        " threshold_milli=excluded.threshold_milli, accepted=excluded.accepted, rejected=excluded.rejected,"
        " updated_us=excluded.updated_us",
        (t.sector, t.pattern_type, t.threshold_milli, t.accepted, t.rejected, t.updated_us),
    )
