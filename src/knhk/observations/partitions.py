"""The monthly partitions of the ``observations`` table (SPEC §11 retention; migration 0015).

A partition is one calendar month (UTC) of ingest time (``received_us``): ingest time is the server's, so a new
row always lands in the current month, never in an archived one, and the PHI data keys (one per sector and month
of ingest) follow the same months. On PostgreSQL a partition is a declarative range partition
``observations_pYYYYMM`` (plus ``observations_default``, the safety net a row lands in when its month has no
partition; it is never dropped); on SQLite it is the rows of that month (indexed by ``received_us``).

Partitions are made ahead of time: :class:`PartitionKeeper` makes the current month's and the next
``KNHK_PARTITIONS_AHEAD`` ones at startup, from the scheduler, and before an ingest whose ingest time reaches
beyond what it made (an in-memory check; no database call on the hot path). Making them never fails an ingest:
if it cannot (a lock not granted within 2 s), the rows land in the default partition.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from knhk.errors import KnhkError
from knhk.storage.database import Connection, Database

log = logging.getLogger("knhk.observations")

MARGIN_US = 7 * 86_400 * 1_000_000  # re-ensure once ingest time is this close to the end of what was made


@dataclass(frozen=True)
class Month:
    """One partition's month: ``period`` YYYY-MM, ingest times [lo_us, hi_us)."""

    period: str
    lo_us: int
    hi_us: int

    @property
    def table(self) -> str:
        return "observations_p" + self.period.replace("-", "")


def _us(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def month_of(us: int) -> Month:
    """The month (UTC) holding the instant ``us`` (µs since the epoch)."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    start = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    end = datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=UTC)
    return Month(f"{dt.year:04d}-{dt.month:02d}", _us(start), _us(end))


def months_between(lo_us: int, hi_us: int) -> list[Month]:
    """Every month from the one holding ``lo_us`` to the one holding ``hi_us``, in order."""
    out = [month_of(lo_us)]
    while out[-1].hi_us <= hi_us:
        out.append(month_of(out[-1].hi_us))
    return out


def ensure(db: Database, from_us: int, months: int) -> int:
    """Make the partitions of the month of ``from_us`` and the ``months`` after it (PostgreSQL; SQLite needs
    none); return how many were made."""
    if db.dialect != "postgresql":
        return 0
    with db.transaction() as conn:
        row = conn.fetchone("SELECT knhk_observation_partitions(?, ?)", (from_us, months))
    return int(row[0]) if row else 0


def stored_months(conn: Connection) -> list[Month]:
    """The months that hold (PostgreSQL: have a partition for) observations, oldest first; never the default
    partition."""
    if conn.dialect == "postgresql":
        rows = conn.fetchall(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'observations'::regclass AND c.relname ~ '^observations_p[0-9]{6}$'"
            " ORDER BY c.relname")
        out = []
        for (name,) in rows:
            text = str(name)[len("observations_p"):]
            out.append(month_of(_us(datetime(int(text[:4]), int(text[4:]), 1, tzinfo=UTC))))
        return out
    row = conn.fetchone("SELECT MIN(received_us), MAX(received_us) FROM observations")
    if row is None or row[0] is None:
        return []
    return [m for m in months_between(int(row[0]), int(row[1]))
            if conn.fetchone("SELECT 1 FROM observations WHERE received_us >= ? AND received_us < ? LIMIT 1",
                             (m.lo_us, m.hi_us)) is not None]


class PartitionKeeper:
    """Keeps the partitions of the coming months made (thread-safe; cheap when nothing is to do)."""

    def __init__(self, db: Database, months_ahead: int) -> None:
        self.db = db
        self.months_ahead = months_ahead
        self._lock = threading.Lock()
        self._covered: tuple[int, int] | None = None  # [lo, hi) of ingest times made so far by this process

    def cover(self, received_us: int) -> None:
        """Before storing rows of ingest time ``received_us``: make sure their month (and the next ones) has a
        partition. Never raises: on failure the rows land in the default partition, and it is logged."""
        covered = self._covered
        if self.db.dialect != "postgresql" or (
                covered is not None and covered[0] <= received_us < covered[1] - MARGIN_US):
            return
        with self._lock:
            covered = self._covered
            if covered is not None and covered[0] <= received_us < covered[1] - MARGIN_US:
                return
            try:
                ensure(self.db, received_us, self.months_ahead)
            except Exception as exc:  # any failure (lock timeout, driver error): never fail the ingest for it
                log.warning("observation partitions from %s could not be made (%s); rows of months without a "
                            "partition land in observations_default", month_of(received_us).period,
                            exc.message if isinstance(exc, KnhkError) else exc)
                return
            last = month_of(received_us)
            for _ in range(self.months_ahead):
                last = month_of(last.hi_us)
            self._covered = (month_of(received_us).lo_us, last.hi_us)
