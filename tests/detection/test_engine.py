"""The detection engine: ordering, thresholds (configured and learned), isolation of a failing detector,
time that never runs backwards, and reconfiguration."""

from __future__ import annotations

import pytest
from detection_support import NOW, US, engine, event, schema

from knhk.detection.builtin import BUILTIN_DETECTORS, Detector
from knhk.detection.engine import DetectionEngine
from knhk.detection.pattern import DetectorConfig, Pattern
from knhk.detection.windows import SectorWindows
from knhk.errors import InvalidInputError
from knhk.ontology.schema import SectorSchema
from knhk.ops.clock import ManualClock

SCHEMA = schema()


def busy_sector() -> list:  # type: ignore[type-arg]
    """Two high-frequency types, an error spike and drift, all within the last minute."""
    events = [event(i, age_s=i * 0.1) for i in range(120)]
    events += [event(200 + i, "user.login", age_s=i * 0.1, value={"user": "u", "ip": "10.0.0.1"})
               for i in range(110)]
    events += [event(400 + i, "payment.error", age_s=i, value={"code": "E"}) for i in range(30)]
    return events


def test_patterns_are_ordered_by_confidence_then_name() -> None:
    eng, _ = engine()
    eng.observe(busy_sector())
    result = eng.detect("finance", SCHEMA, NOW)
    assert [(p.name, p.confidence) for p in result.patterns] == [
        ("high_frequency:payment.created", 0.95), ("high_frequency:user.login", 0.95), ("error_spike", 0.90),
        ("schema_drift:user.login", 0.70)]
    assert result.errors == ()
    assert result.ok


@pytest.mark.parametrize(("threshold", "kept_drift"), [(0.70, True), (0.71, False), (0.75, False)])
def test_confidence_threshold_is_inclusive(threshold: float, kept_drift: bool) -> None:
    eng, _ = engine(DetectorConfig(confidence_threshold=threshold))
    eng.observe(busy_sector())
    result = eng.detect("finance", SCHEMA, NOW)
    assert any(p.kind == "schema_drift" for p in result.patterns) is kept_drift
    assert any(p.kind == "schema_drift" for p in result.dropped) is not kept_drift


def test_learned_thresholds_apply_per_pattern_kind() -> None:
    eng, _ = engine()
    eng.observe(busy_sector())
    result = eng.detect("finance", SCHEMA, NOW, thresholds={"error_spike": 950, "schema_drift": 700})
    assert [p.name for p in result.dropped] == ["error_spike"]
    assert "schema_drift:user.login" in [p.name for p in result.patterns]


def test_a_failing_detector_is_isolated() -> None:
    def broken(view: SectorWindows, schema: SectorSchema | None, now_us: int) -> list[Pattern]:
        raise ZeroDivisionError("division by zero in a plug-in")

    eng = DetectionEngine(ManualClock(NOW), detectors=(Detector("broken", broken), *BUILTIN_DETECTORS))
    eng.observe(busy_sector())
    result = eng.detect("finance", SCHEMA, NOW)
    assert not result.ok
    assert [(f.detector, f.error) for f in result.errors] == [
        ("broken", "ZeroDivisionError: division by zero in a plug-in")]
    assert len(result.patterns) == 4


def test_windows_slide_as_time_passes_without_new_observations() -> None:
    eng, _ = engine()
    eng.observe(busy_sector())
    assert len(eng.detect("finance", SCHEMA, NOW).patterns) == 4
    later = eng.detect("finance", SCHEMA, NOW + 61 * US)
    assert [p.name for p in later.patterns] == ["no_observations", "schema_drift:user.login"]
    latest = eng.detect("finance", SCHEMA, NOW + 301 * US)
    assert [p.name for p in latest.patterns] == ["no_observations"]


def test_time_never_runs_backwards() -> None:
    eng, _ = engine()
    eng.observe([event(1, age_s=0)])
    assert eng.detect("finance", SCHEMA, NOW + 20 * US).now_us == NOW + 20 * US
    back = eng.detect("finance", SCHEMA, NOW)  # a clock step back is treated as no time passing
    assert back.now_us == NOW + 20 * US
    assert [p.name for p in back.patterns] == ["no_observations"]


def test_detect_defaults_to_the_clock() -> None:
    eng, clock = engine()
    eng.observe([event(1, age_s=0)])
    clock.advance(11)
    result = eng.detect("finance", SCHEMA)
    assert result.now_us == NOW + 11 * US
    assert [p.name for p in result.patterns] == ["no_observations"]


def test_sectors_are_evaluated_separately() -> None:
    eng, _ = engine()
    eng.observe([event(i, sector="logistics", age_s=i * 0.1, value={}) for i in range(150)])
    eng.observe([event(1, age_s=0)])
    finance = eng.detect("finance", SCHEMA, NOW)
    assert finance.patterns == ()
    logistics = eng.detect("logistics", None, NOW)
    assert {p.name for p in logistics.patterns} == {"high_frequency:payment.created",
                                                    "schema_drift:payment.created"}
    assert eng.sectors() == ["finance", "logistics"]


def test_configure_changes_thresholds_and_restarts_windows() -> None:
    eng, _ = engine()
    eng.observe([event(i, age_s=i) for i in range(5)])
    eng.configure("finance", DetectorConfig(high_frequency_count=2))
    assert eng.detect("finance", SCHEMA, NOW).patterns == ()  # windows restarted: prime again to refill
    eng.prime([event(i, age_s=i) for i in range(5)])
    assert [p.name for p in eng.detect("finance", SCHEMA, NOW).patterns] == ["high_frequency:payment.created"]


def test_pattern_receipt_data_is_canonical() -> None:
    from knhk.proof.canonical import check_canonical

    eng, _ = engine()
    eng.observe(busy_sector())
    eng.observe([event(900, "refund.created", age_s=1, value={"amount": 1.5, "tags": ["a"], "m": {"k": 2.5}})])
    for pattern in eng.detect("finance", SCHEMA, NOW + 11 * US).patterns:
        check_canonical(pattern.receipt_data())
        check_canonical(list(pattern.evidence))


@pytest.mark.parametrize("bad", [
    {"high_frequency_window_s": 0}, {"silence_s": -1}, {"error_share": 1.0}, {"confidence_threshold": 1.5},
    {"max_evidence": 0}, {"high_frequency_count": -1},
])
def test_detector_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        DetectorConfig(**bad)  # type: ignore[arg-type]
