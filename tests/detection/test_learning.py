"""Threshold learning (SPEC §3): steps of 0.05 within [0.70, 0.95], judged per sample of 10 outcomes, and
persisted per sector and pattern kind on both backends."""

from __future__ import annotations

import pytest
from detection_support import NOW, engine, event, schema

from knhk.detection.learning import SAMPLE_SIZE, ThresholdState, record_outcome
from knhk.detection.thresholds import ThresholdBook
from knhk.errors import InvalidInputError
from knhk.ops.clock import ManualClock
from knhk.storage.database import Database


def sample(state: ThresholdState, accepted: int, total: int = SAMPLE_SIZE) -> ThresholdState:
    for i in range(total):
        state = record_outcome(state, i < accepted)
    return state


@pytest.mark.parametrize(("start", "accepted", "after"), [
    (700, 4, 750),  # 40 % < 50 %: raise
    (700, 0, 750),
    (700, 5, 700),  # exactly 50 %: unchanged
    (800, 9, 800),  # exactly 90 %: unchanged
    (800, 10, 750),  # 100 % > 90 %: lower
    (950, 0, 950),  # upper bound
    (700, 10, 700),  # lower bound
])
def test_one_sample_moves_the_threshold_one_step(start: int, accepted: int, after: int) -> None:
    state = sample(ThresholdState(start), accepted)
    assert state == ThresholdState(after, 0, 0)


def test_nothing_moves_before_the_sample_is_complete() -> None:
    state = sample(ThresholdState(700), 0, total=SAMPLE_SIZE - 1)
    assert state == ThresholdState(700, 0, SAMPLE_SIZE - 1)


def test_repeated_rejections_climb_to_095_and_stop() -> None:
    state = ThresholdState(700)
    seen = []
    for _ in range(8):
        state = sample(state, 0)
        seen.append(state.threshold_milli)
    assert seen == [750, 800, 850, 900, 950, 950, 950, 950]
    assert state.threshold == 0.95


def test_threshold_book_persists_per_sector_and_kind(db: Database) -> None:
    book = ThresholdBook(db, ManualClock(NOW))
    for i in range(SAMPLE_SIZE):
        book.record("finance", "schema_drift", accepted=i < 2)
    book.record("finance", "error_spike", accepted=True)
    assert book.thresholds("finance") == {"schema_drift": 750, "error_spike": 700}
    assert book.state("finance", "error_spike") == ThresholdState(700, 1, 0)
    assert book.thresholds("logistics") == {}
    assert ThresholdBook(db, ManualClock(NOW)).state("finance", "schema_drift") == ThresholdState(750)


def test_learned_threshold_drops_patterns_of_that_kind(db: Database) -> None:
    book = ThresholdBook(db, ManualClock(NOW))
    for _ in range(SAMPLE_SIZE):
        book.record("finance", "schema_drift", accepted=False)
    eng, _ = engine()
    eng.observe([event(1, "refund.created", value={}, age_s=0)])
    result = eng.detect("finance", schema(), NOW, thresholds=book.thresholds("finance"))
    assert [p.name for p in result.dropped] == ["schema_drift:refund.created"]
    assert result.patterns == ()


def test_threshold_book_validates_names(db: Database) -> None:
    book = ThresholdBook(db, ManualClock(NOW))
    with pytest.raises(InvalidInputError, match="lowercase slug"):
        book.record("Finance", "schema_drift", accepted=True)
    with pytest.raises(InvalidInputError, match="pattern kind"):
        book.record("finance", "Schema Drift", accepted=True)
