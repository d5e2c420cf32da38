"""Boundary tables for the four built-in detectors of SPEC §3 (windows closed at now − W: an event exactly W
seconds old is inside, one a microsecond older is not)."""

from __future__ import annotations

import pytest
from detection_support import NOW, US, engine, event, schema

from knhk.detection.pattern import DetectionResult, DetectorConfig, Pattern
from knhk.observations.model import Observation

SCHEMA = schema()


def run(events: list[Observation], config: DetectorConfig | None = None, now_us: int = NOW,
        monitored: bool = True) -> DetectionResult:
    eng, _ = engine(config, now_us=min([now_us, *(e.ts_us for e in events)]))
    if monitored:
        eng.monitor("finance")
    eng.observe(events)
    return eng.detect("finance", SCHEMA, now_us)


def named(result: DetectionResult, name: str) -> Pattern | None:
    return next((p for p in result.patterns if p.name == name), None)


# -- high_frequency -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("count", "fires"), [(100, False), (101, True)])
def test_high_frequency_needs_more_than_100_in_60_s(count: int, fires: bool) -> None:
    events = [event(i, age_s=i * 0.5) for i in range(count)]
    pattern = named(run(events), "high_frequency:payment.created")
    assert (pattern is not None) is fires
    if pattern is not None:
        assert pattern.confidence == 0.95
        assert pattern.recommended_action == "propose a rate-limit guard for payment.created"
        assert pattern.details["count"] == 101
        assert pattern.details["window_s"] == 60
        assert set(pattern.evidence) == {e.id for e in events}
        assert list(pattern.evidence) == [e.id for e in sorted(events, key=lambda e: e.ts_us)]


@pytest.mark.parametrize(("oldest_age_s", "fires"), [(60.0, True), (60.000001, False)])
def test_high_frequency_window_edge(oldest_age_s: float, fires: bool) -> None:
    events = [event(i, age_s=i * 0.1) for i in range(100)] + [event(100, age_s=oldest_age_s)]
    assert (named(run(events), "high_frequency:payment.created") is not None) is fires


def test_high_frequency_is_per_type_and_evidence_is_capped() -> None:
    events = [event(i, age_s=i * 0.1) for i in range(150)]
    events += [event(1000 + i, "user.login", age_s=i * 0.1, value={"user": "u"}) for i in range(100)]
    result = run(events, DetectorConfig(max_evidence=20))
    pattern = named(result, "high_frequency:payment.created")
    assert pattern is not None
    assert named(result, "high_frequency:user.login") is None
    assert pattern.details["count"] == 150
    assert pattern.details["evidence_truncated"] is True
    assert list(pattern.evidence) == [f"finance-{i}" for i in range(19, -1, -1)]  # the 20 most recent


def test_high_frequency_threshold_is_configurable_per_sector() -> None:
    events = [event(i, age_s=i) for i in range(6)]
    assert named(run(events, DetectorConfig(high_frequency_count=5)), "high_frequency:payment.created")
    assert not named(run(events, DetectorConfig(high_frequency_count=6)), "high_frequency:payment.created")


# -- error_spike ----------------------------------------------------------------------------------------
def errors_and_ok(errors: int, total: int) -> list[Observation]:
    return ([event(i, "payment.error", age_s=i, value={"code": "E1"}) for i in range(errors)]
            + [event(100 + i, age_s=i) for i in range(total - errors)])


@pytest.mark.parametrize(("errors", "total", "fires"), [
    (10, 10, False),  # not more than 10 events, even at 100 % errors
    (11, 11, True),
    (1, 20, False),  # exactly 5 % is not above 5 %
    (2, 20, True),  # 10 %
    (0, 50, False),
])
def test_error_spike_table(errors: int, total: int, fires: bool) -> None:
    pattern = named(run(errors_and_ok(errors, total)), "error_spike")
    assert (pattern is not None) is fires
    if pattern is not None:
        assert pattern.confidence == 0.90
        assert pattern.alert_level == "warning"
        assert set(pattern.evidence) == {f"finance-{i}" for i in range(errors)}
        assert (pattern.details["errors"], pattern.details["total"]) == (errors, total)


def test_error_spike_counts_metadata_level_error_and_case_insensitive_types() -> None:
    events = [event(i, age_s=i) for i in range(18)]
    events.append(event(50, "Payment.ERROR.Timeout", age_s=1, value={}))
    events.append(event(51, age_s=2, metadata={"level": "error"}))
    pattern = named(run(events), "error_spike")
    assert pattern is not None
    assert set(pattern.evidence) == {"finance-50", "finance-51"}


def test_error_spike_only_counts_the_window() -> None:
    events = errors_and_ok(0, 15) + [event(900 + i, "payment.error", age_s=61, value={}) for i in range(5)]
    assert named(run(events), "error_spike") is None


# -- no_observations ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("age_s", "fires"), [(0, False), (10.0, False), (10.000001, True), (3600, True)])
def test_silence_boundary(age_s: float, fires: bool) -> None:
    pattern = named(run([event(1, age_s=age_s)]), "no_observations")
    assert (pattern is not None) is fires
    if pattern is not None:
        assert pattern.confidence == 0.80
        assert pattern.alert_level == "critical"
        assert pattern.evidence == ()
        assert pattern.details["last_ts_us"] == NOW - round(age_s * US)


def test_silence_only_for_monitored_sectors() -> None:
    assert named(run([], monitored=False), "no_observations") is None
    assert named(run([], monitored=True), "no_observations") is not None
    eng, _ = engine()
    eng.observe([event(1, age_s=30)])  # a sector seen once is monitored from then on
    assert named(eng.detect("finance", SCHEMA), "no_observations") is not None
    assert named(eng.detect("logistics", None), "no_observations") is None


# -- schema_drift ---------------------------------------------------------------------------------------
def test_drift_on_a_new_event_type_describes_its_fields() -> None:
    events = [event(1, "refund.created", age_s=3, value={"amount": 5, "reason": "dup"}),
              event(2, "refund.created", age_s=2, value={"amount": 7.5, "reason": "late", "note": None}),
              event(3, "refund.created", age_s=1, value={"amount": 5, "reason": "dup"})]
    pattern = named(run(events), "schema_drift:refund.created")
    assert pattern is not None
    assert pattern.confidence == 0.70
    assert pattern.evidence == ("finance-1", "finance-2", "finance-3")
    details = pattern.details
    assert details["new_type"] is True
    assert details["count"] == 3
    assert details["fields"]["amount"] == {"types": ["float", "int"], "kinds": ["integer", "number"],
                                           "count": 3, "present_in_all": True, "samples": ["5", "7.5"]}
    assert details["fields"]["reason"]["samples"] == ['"dup"', '"late"']
    assert details["fields"]["note"] == {"types": ["NoneType"], "kinds": ["null"], "count": 1,
                                         "present_in_all": False, "samples": ["null"]}
    assert "declaring event type refund.created" in pattern.recommended_action


def test_drift_on_a_declared_type_names_only_undeclared_fields() -> None:
    events = [event(1, value={"transaction_amount": 1, "channel": "web"}, age_s=1),
              event(2, value={"transaction_amount": 2}, age_s=1),
              event(3, value={"transaction_amount": "wrong type is not drift"}, age_s=1)]
    pattern = named(run(events), "schema_drift:payment.created")
    assert pattern is not None
    assert pattern.evidence == ("finance-1",)
    assert pattern.details["new_type"] is False
    assert list(pattern.details["fields"]) == ["channel"]
    assert pattern.details["fields"]["channel"]["present_in_all"] is True
    assert pattern.recommended_action == "propose ΔΣ declaring fields channel of payment.created"


def test_drift_is_judged_against_the_current_schema_at_detect_time() -> None:
    eng, _ = engine()
    eng.observe([event(1, "refund.created", value={"amount": 5}, age_s=1)])
    assert named(eng.detect("finance", SCHEMA), "schema_drift:refund.created") is not None
    promoted = schema(extra_types={"refund.created": {"amount": "http://www.w3.org/2001/XMLSchema#decimal"}},
                      snapshot_id="snap-2")
    assert named(eng.detect("finance", promoted), "schema_drift:refund.created") is None
    assert named(eng.detect("finance", SCHEMA), "schema_drift:refund.created") is not None


@pytest.mark.parametrize(("age_s", "fires"), [(300.0, True), (300.000001, False)])
def test_drift_window_edge(age_s: float, fires: bool) -> None:
    result = run([event(1, "refund.created", value={}, age_s=age_s), event(2, age_s=0)])
    assert (named(result, "schema_drift:refund.created") is not None) is fires


def test_samples_are_canonical_text_and_cut_at_200_characters() -> None:
    pattern = named(run([event(1, "x.y", value={"blob": "a" * 500, "f": 0.1}, age_s=1)]), "schema_drift:x.y")
    assert pattern is not None
    blob = pattern.details["fields"]["blob"]["samples"][0]
    assert len(blob) == 200
    assert blob.endswith("…")
    assert pattern.details["fields"]["f"]["samples"] == ["0.1"]
