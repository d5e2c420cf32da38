"""Property: the incremental engine finds exactly what a from-scratch recomputation over the same events
finds, for random event streams (late arrivals included), random clocks and schema changes between calls."""

from __future__ import annotations

import hashlib
from typing import Any

from detection_support import NOW, schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knhk.detection.engine import DetectionEngine
from knhk.detection.pattern import DetectorConfig
from knhk.detection.reference import detect_reference
from knhk.observations.model import Observation
from knhk.ontology.schema import XSD_STRING, SectorSchema
from knhk.ops.clock import ManualClock

CONFIG = DetectorConfig(high_frequency_count=3, high_frequency_window_s=5, error_min_events=2, error_share=0.3,
                        error_window_s=4, silence_s=2, drift_window_s=8, max_evidence=3)
SECTORS = ("finance", "logistics")
TYPES = ("payment.created", "payment.error", "user.login", "refund.created")
KEYS = ("transaction_amount", "currency", "extra", "user")
SCHEMAS: tuple[SectorSchema | None, ...] = (
    schema(), schema(extra_types={"refund.created": {"extra": XSD_STRING}}, snapshot_id="snap-2"), None)
MS = 1000

json_values = st.one_of(st.integers(-5, 5), st.floats(-10, 10, allow_nan=False, allow_infinity=False),
                        st.sampled_from(["a", "b", "2024-05-01T12:00:00Z"]), st.booleans(), st.none())
# times on a 500 ms grid so that events often sit exactly on a window's edge
events = st.tuples(st.sampled_from(SECTORS), st.sampled_from(TYPES), st.integers(-30, 6).map(lambda k: k * 500),
                   st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3), st.booleans())
operations = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 8).map(lambda k: k * 500)),
    st.tuples(st.just("observe"), st.lists(events, max_size=12)),
    st.tuples(st.just("detect"), st.sampled_from(SECTORS), st.integers(-4, 4).map(lambda k: k * 500),
              st.integers(0, len(SCHEMAS) - 1)),
), min_size=1, max_size=40)


def build(n: int, clock_us: int, spec: tuple[str, str, int, dict[str, Any], bool]) -> Observation:
    sector, event_type, offset_ms, value, error_meta = spec
    return Observation(id=f"e{n}", event_type=event_type, sector=sector, ts_us=clock_us + offset_ms * MS,
                       received_us=clock_us, value=value, metadata={"level": "error"} if error_meta else {},
                       content_hash=hashlib.sha256(str(n).encode()).hexdigest())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_incremental_detection_equals_recomputation(ops: list[tuple[Any, ...]]) -> None:
    clock = ManualClock(NOW)
    engine = DetectionEngine(clock, default_config=CONFIG)
    seen: list[Observation] = []
    watermark: dict[str, int] = {}
    for op in ops:
        if op[0] == "advance":
            clock.set(clock.now_us() + op[1] * MS)
        elif op[0] == "observe":
            batch = [build(len(seen) + i, clock.now_us(), spec) for i, spec in enumerate(op[1])]
            engine.observe(batch)
            seen.extend(batch)
            for sector in {o.sector for o in batch}:
                watermark[sector] = max(watermark.get(sector, clock.now_us()), clock.now_us())
        else:
            _, sector, offset_ms, schema_index = op
            asked = clock.now_us() + offset_ms * MS
            now = max(asked, watermark.get(sector, asked))
            watermark[sector] = now
            result = engine.detect(sector, SCHEMAS[schema_index], asked, populations=True)
            expected = detect_reference(sector, seen, SCHEMAS[schema_index], CONFIG, now,
                                        monitored=any(o.sector == sector for o in seen))
            assert result.now_us == now
            assert result.patterns == expected.patterns
            assert result.dropped == expected.dropped
            for got, want in zip(result.patterns, expected.patterns, strict=True):
                # what receipts commit to: every observation the pattern rests on, with its content hash
                assert sorted(e[2:] for e in got.population) == sorted(e[2:] for e in want.population), got.name
            assert result.errors == ()
