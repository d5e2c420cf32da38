"""Reading stored observations (SPEC §2, §10 ``GET /observations``): by id, filtered pages with an ingest-order
cursor, a sector's most recent ones (Q2 and shadow replay, default 1,000), counts, and everything since a time
(to prime the detection windows at start-up).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from knhk.errors import InvalidInputError, NotFoundError
from knhk.observations import store
from knhk.observations.model import Observation, is_sector
from knhk.storage.database import Database

MAX_PAGE = 10_000


@dataclass(frozen=True)
class ObservationPage:
    """One page of observations in ingest order; pass ``next_after`` back to continue (None: no more)."""

    items: list[Observation]
    next_after: int | None


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE}, got {limit}", field="limit")


def _check_sector(sector: str | None) -> None:
    if sector is not None and not is_sector(sector):
        raise InvalidInputError(f"sector {sector!r} is not a lowercase slug", field="sector")


class ObservationReader:
    """Read access to the observations table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, obs_id: str) -> Observation:
        with self.db.connection() as conn:
            obs = store.get_observation(conn, obs_id)
        if obs is None:
            raise NotFoundError(f"no observation has id {obs_id!r}")
        return obs

    def query(self, *, sector: str | None = None, event_type: str | None = None, since_us: int | None = None,
             until_us: int | None = None, after: int = 0, limit: int = 100) -> ObservationPage:
        """Observations with ``since_us`` ≤ timestamp < ``until_us``, in ingest order after cursor ``after``."""
        _check_limit(limit)
        _check_sector(sector)
        if after < 0:
            raise InvalidInputError("the cursor must be a non-negative ingest sequence number", field="after")
        if since_us is not None and until_us is not None and until_us < since_us:
            raise InvalidInputError("until must not be earlier than since", field="until")
        with self.db.connection() as conn:
            items = store.list_observations(conn, sector=sector, event_type=event_type, since_us=since_us,
                                            until_us=until_us, after_seq=after, limit=limit)
        next_after = items[-1].seq if len(items) == limit else None
        return ObservationPage(items, next_after)

    def recent(self, sector: str, limit: int = 1000) -> list[Observation]:
        """A sector's ``limit`` most recently ingested observations, oldest first."""
        _check_limit(limit)
        _check_sector(sector)
        with self.db.connection() as conn:
            return store.recent_observations(conn, sector, limit)

    def last_seq(self, sector: str) -> int:
        """The ingest sequence number of the sector's newest observation (0: none yet)."""
        _check_sector(sector)
        with self.db.connection() as conn:
            return store.last_seq(conn, sector)

    def count(self, sector: str | None = None) -> int:
        _check_sector(sector)
        with self.db.connection() as conn:
            return store.count_observations(conn, sector)

    def since(self, since_us: int, *, sector: str | None = None, page: int = 5000) -> Iterator[Observation]:
        """Every observation with a timestamp at or after ``since_us``, in ingest order, fetched page by page."""
        after = 0
        while True:
            result = self.query(sector=sector, since_us=since_us, after=after, limit=page)
            yield from result.items
            if result.next_after is None:
                return
            after = result.next_after
