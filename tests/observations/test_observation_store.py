"""The observations table on both backends: round trips, filters and cursors, append-only triggers, and the
learned-threshold table."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from knhk.observations import store
from knhk.observations.model import Observation, parse_observation
from knhk.observations.reader import ObservationReader
from knhk.storage.database import Database

T0 = 1_714_564_800_000_000
US = 1_000_000


def make(i: int, *, sector: str = "finance", event_type: str = "payment.created", ts_s: float = 0) -> Observation:
    return parse_observation({"id": f"obs-{i}", "event_type": event_type, "sector": sector,
                              "value": {"amount": i + 0.5, "note": "naïve ✓"},
                              "metadata": {"source": "test"}}, received_us=T0 + round(ts_s * US),
                             client="svc")


def insert(db: Database, observations: list[Observation]) -> None:
    with db.transaction() as conn:
        store.insert_observations(conn, observations)


def test_round_trip_keeps_every_field(db: Database) -> None:
    original = make(1)
    insert(db, [original])
    stored = ObservationReader(db).get("obs-1")
    assert stored.seq is not None
    assert stored.seq >= 1
    for name in ("id", "event_type", "sector", "ts_us", "received_us", "value", "metadata", "content_hash",
                 "client_id", "ts_defaulted", "skewed", "conforming", "issues", "client"):
        assert getattr(stored, name) == getattr(original, name), name
    assert stored.value["amount"] == 1.5
    assert stored.value["note"] == "naïve ✓"


def test_filters_cursor_recent_and_count(db: Database) -> None:
    rows = [make(i, sector="finance" if i % 2 else "logistics",
                 event_type="a" if i % 3 else "b", ts_s=i) for i in range(30)]
    insert(db, rows)
    reader = ObservationReader(db)
    assert reader.count() == 30
    assert reader.count("finance") == 15
    page = reader.query(sector="finance", limit=4)
    assert [o.id for o in page.items] == ["obs-1", "obs-3", "obs-5", "obs-7"]
    assert page.next_after is not None
    following = reader.query(sector="finance", after=page.next_after, limit=4)
    assert [o.id for o in following.items] == ["obs-9", "obs-11", "obs-13", "obs-15"]
    window = reader.query(sector="finance", event_type="b", since_us=T0 + 3 * US, until_us=T0 + 21 * US)
    assert [o.id for o in window.items] == ["obs-3", "obs-9", "obs-15"]
    assert window.next_after is None
    assert [o.id for o in reader.recent("logistics", 3)] == ["obs-24", "obs-26", "obs-28"]
    assert [o.id for o in reader.since(T0 + 25 * US, sector="finance", page=2)] == ["obs-25", "obs-27",
                                                                                     "obs-29"]


def test_reader_refuses_bad_arguments(db: Database) -> None:
    from knhk.errors import InvalidInputError, NotFoundError

    reader = ObservationReader(db)
    with pytest.raises(NotFoundError, match="no observation has id 'nope'"):
        reader.get("nope")
    with pytest.raises(InvalidInputError, match="limit must be between 1 and 10000"):
        reader.query(limit=0)
    with pytest.raises(InvalidInputError, match="lowercase slug"):
        reader.recent("Finance")
    with pytest.raises(InvalidInputError, match="until must not be earlier"):
        reader.query(since_us=5, until_us=4)


DB_ERRORS = (sqlite3.DatabaseError, psycopg.Error)


@pytest.mark.parametrize("statement", [
    "UPDATE observations SET value='{}' WHERE id='obs-1'",
    "DELETE FROM observations WHERE id='obs-1'",
])
def test_observations_are_append_only(db: Database, statement: str) -> None:
    insert(db, [make(1)])
    with pytest.raises(DB_ERRORS, match="append-only"), db.transaction() as conn:
        conn.execute(statement)
    assert ObservationReader(db).get("obs-1").value["amount"] == 1.5


def test_truncate_is_refused_on_postgresql(db: Database) -> None:
    insert(db, [make(1)])
    # SQLite has no TRUNCATE; there an unqualified DELETE is the same operation
    statement = "DELETE FROM observations" if db.dialect == "sqlite" else "TRUNCATE observations"
    with pytest.raises(DB_ERRORS, match="append-only"), db.transaction() as conn:
        conn.execute(statement)
    assert ObservationReader(db).count() == 1


def test_duplicate_ids_are_refused_by_the_table(db: Database) -> None:
    insert(db, [make(1)])
    with pytest.raises(DB_ERRORS), db.transaction() as conn:
        store.insert_observations(conn, [make(2), make(1)])
    assert ObservationReader(db).count() == 1


def test_threshold_rows_upsert(db: Database) -> None:
    from knhk.detection import store  # the thresholds table belongs to detection

    with db.transaction() as conn:
        store.put_threshold(conn, store.StoredThreshold("finance", "schema_drift", 750, 3, 1, 10))
        store.put_threshold(conn, store.StoredThreshold("finance", "schema_drift", 800, 0, 0, 20))
        store.put_threshold(conn, store.StoredThreshold("finance", "error_spike", 700, 1, 0, 30))
    with db.connection() as conn:
        assert store.get_threshold(conn, "finance", "schema_drift") == store.StoredThreshold(
            "finance", "schema_drift", 800, 0, 0, 20)
        assert [t.pattern_type for t in store.list_thresholds(conn, "finance")] == ["error_spike",
                                                                                     "schema_drift"]
        assert store.get_threshold(conn, "logistics", "schema_drift") is None
