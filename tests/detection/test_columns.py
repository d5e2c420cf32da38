"""The columnar window entries (knhk.detection.columns) against a sorted list of tuples: order, out-of-order
inserts, equal timestamps, eviction (with compaction), tail and iteration."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knhk.detection.columns import Entry, EntryColumns, Stamps


def leaf(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 60), st.sampled_from(["a", "obs-1", "x" * 128, "é-id"]),
              st.one_of(st.none(), st.integers(0, 2 ** 40))),
    st.tuples(st.just("evict"), st.integers(0, 70), st.just(""), st.none()),
    st.tuples(st.just("tail"), st.integers(0, 12), st.just(""), st.none()),
), max_size=120)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_columns_behave_like_a_sorted_list(script: list[tuple[str, int, str, int | None]]) -> None:
    columns, stamps, want = EntryColumns(), Stamps(), list[Entry]()
    arrival = 0
    for op, number, obs_id, seq in script:
        if op == "add":
            arrival += 1
            columns.add_entry(number, arrival, obs_id, seq, leaf(arrival))
            stamps.add(number, arrival)
            want.append((number, arrival, obs_id, seq, leaf(arrival)))
            want.sort(key=lambda e: (e[0], e[1]))
        elif op == "evict":
            columns.evict(number)
            stamps.evict(number)
            want = [e for e in want if e[0] >= number]
        else:
            last = want[-number:] if number else []
            assert columns.tail(number) == last
            assert columns.tail_ids(number) == tuple(e[2] for e in last)
            assert columns.tail_keys(number) == [e[:3] for e in last]
        assert list(columns) == want
        assert len(columns) == len(stamps) == len(want)
        assert bool(columns) is bool(want)
        if want:
            assert (columns.first_ts, columns.last_ts) == (want[0][0], want[-1][0])
            assert (stamps.first_ts, stamps.last_ts) == (want[0][0], want[-1][0])


def test_eviction_compacts_and_keeps_the_rest() -> None:
    columns = EntryColumns()
    for i in range(5000):
        columns.add_entry(i, i, f"obs-{i}", i, leaf(i))
    for floor in (100, 1500, 2600, 4999):
        columns.evict(floor)
        assert len(columns) == 5000 - floor
        assert columns.first_ts == floor
        assert columns.tail(2) == [(i, i, f"obs-{i}", i, leaf(i)) for i in (4998, 4999)][-len(columns):]
    columns.add_entry(4000, 5000, "late", None, leaf(5000))  # out of order, before the newest
    assert [e[2] for e in columns] == ["late", "obs-4999"]
    columns.evict(10_000)
    assert not columns
    assert list(columns) == []
    assert columns.tail(3) == []
    with pytest.raises(IndexError):
        _ = columns.first_ts


def test_malformed_entries_are_refused() -> None:
    columns = EntryColumns()
    with pytest.raises(ValueError):
        columns.add_entry(1, 1, "id", 1, b"short")
    with pytest.raises(ValueError):
        columns.add_entry(1, 1, "x" * 70_000, 1, leaf(1))
    with pytest.raises(ValueError):
        columns.add_entry(1, 1, "a\x00b", 1, leaf(1))
    assert len(columns) == 0
