"""Stored learned thresholds (table ``detector_thresholds``): read them for detection, record outcomes.

Each outcome is a read-modify-write in one transaction under the lock ``knhk.thresholds.<sector>`` (a
PostgreSQL advisory lock; SQLite's write lock), so concurrent replicas never lose a count. A sector and kind
with no row use the sector's configured ``confidence_threshold``, clamped into [0.70, 0.95], as the starting
point.
"""

from __future__ import annotations

import re

from knhk.detection import store
from knhk.detection.learning import ThresholdState, clamp, record_outcome
from knhk.errors import InvalidInputError
from knhk.observations.model import is_sector
from knhk.ops.clock import Clock
from knhk.storage.database import Database

_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _check(sector: str, kind: str) -> None:
    if not is_sector(sector):
        raise InvalidInputError(f"sector {sector!r} is not a lowercase slug", field="sector")
    if not _KIND.fullmatch(kind):
        raise InvalidInputError(f"pattern kind {kind!r} must be a lowercase word like schema_drift", field="kind")


class ThresholdBook:
    """Learned confidence thresholds of every sector, in thousandths."""

    def __init__(self, db: Database, clock: Clock, default_milli: int = 700) -> None:
        self.db = db
        self.clock = clock
        self.default_milli = clamp(default_milli)

    def thresholds(self, sector: str) -> dict[str, int]:
        """Pattern kind → learned threshold (thousandths) for ``detect(..., thresholds=)``."""
        with self.db.connection() as conn:
            return {t.pattern_type: t.threshold_milli for t in store.list_thresholds(conn, sector)}

    def state(self, sector: str, kind: str) -> ThresholdState:
        _check(sector, kind)
        with self.db.connection() as conn:
            row = store.get_threshold(conn, sector, kind)
        if row is None:
            return ThresholdState(self.default_milli)
        return ThresholdState(row.threshold_milli, row.accepted, row.rejected)

    def record(self, sector: str, kind: str, accepted: bool) -> ThresholdState:
        """Count one accepted or rejected proposal born of a ``kind`` pattern; return the new state."""
        _check(sector, kind)
        with self.db.transaction(lock=f"knhk.thresholds.{sector}") as conn:
            row = store.get_threshold(conn, sector, kind)
            current = (ThresholdState(self.default_milli) if row is None
                       else ThresholdState(row.threshold_milli, row.accepted, row.rejected))
            new = record_outcome(current, accepted)
            store.put_threshold(conn, store.StoredThreshold(sector, kind, new.threshold_milli, new.accepted,
                                                            new.rejected, self.clock.now_us()))
        return new
