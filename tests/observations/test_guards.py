"""Hot-path guards on ingest (SPEC §2): value bounds compared as decimals, rate limits over a window."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from obs_support import NS, finance_schema

from knhk.observations.guards import GuardEvaluator, alert_level, as_decimal
from knhk.observations.model import Observation, parse_observation
from knhk.ontology.schema import GuardSpec
from knhk.proof.canonical import check_canonical

T0 = 1_714_564_800_000_000
US = 1_000_000


def obs(value: dict[str, Any], *, event_type: str = "payment.created", ts_us: int = T0,
        obs_id: str | None = None) -> Observation:
    raw: dict[str, Any] = {"event_type": event_type, "sector": "finance", "value": value}
    if obs_id:
        raw["id"] = obs_id
    return parse_observation(raw, received_us=ts_us)


def violations(observations: list[Observation], guards: tuple[GuardSpec, ...] | None = None,
               evaluator: GuardEvaluator | None = None) -> list[Any]:
    return (evaluator or GuardEvaluator()).evaluate(observations, finance_schema(guards=guards))


@pytest.mark.parametrize(("amount", "violates"), [
    (999_999, False), (1_000_000, False), (1_000_000.0, False), (1_000_001, True), (1_000_000.01, True),
    (1e7, True), (-5, False),
])
def test_max_value_guard_is_strict_above_the_limit(amount: Any, violates: bool) -> None:
    found = violations([obs({"transaction_amount": amount})])
    assert bool(found) is violates
    if violates:
        v = found[0]
        assert (v.guard_id, v.field, v.limit, v.criticality) == (
            "FIN-LIMIT-001", "transaction_amount", "1000000", "critical")
        assert Decimal(v.value) == as_decimal(amount)
        assert "exceeds the maximum 1000000" in v.reason


@pytest.mark.parametrize("value", [{}, {"other": 5_000_000}, {"transaction_amount": "999999.5"}])
def test_missing_fields_and_values_within_the_limit_do_not_violate(value: dict[str, Any]) -> None:
    assert violations([obs(value)]) == []


@pytest.mark.parametrize(("raw", "shown"), [(None, "null"), (True, "true"), ("2,000,000", '"2,000,000"'),
                                            ([1], "[1]"), ("NaN", '"NaN"')])
def test_a_value_that_cannot_be_read_as_a_number_violates(raw: Any, shown: str) -> None:
    found, = violations([obs({"transaction_amount": raw})])
    assert (found.guard_id, found.value, found.data()["unreadable"]) == ("FIN-LIMIT-001", shown, True)
    assert "cannot be read as a number" in found.reason


def test_a_numeric_string_is_compared_as_a_number() -> None:
    found, = violations([obs({"transaction_amount": " 2.0E6 "})])
    assert (found.value, "unreadable" in found.data()) == ("2000000", False)


def test_min_value_guard_and_the_guarded_event_type_only() -> None:
    guard = GuardSpec("MIN-1", NS + "Min", "min_value", "payment.created", "transaction_amount",
                      Decimal("0.01"), ticks=1, criticality="medium")
    found = violations([obs({"transaction_amount": 0.01}), obs({"transaction_amount": 0.001}),
                        obs({"transaction_amount": 0}, event_type="user.login")], (guard,))
    assert [(v.value, v.limit, v.level) for v in found] == [("0.001", "0.01", "warning")]
    assert "below the minimum" in found[0].reason


def test_guards_not_on_the_hot_path_are_not_evaluated_on_ingest() -> None:
    guard = GuardSpec("COLD", NS + "Cold", "max_value", "payment.created", "transaction_amount", Decimal(1),
                      ticks=1, hot_path=False)
    assert violations([obs({"transaction_amount": 5})], (guard,)) == []


def test_violation_data_is_canonical_ledger_json() -> None:
    found = violations([obs({"transaction_amount": 1_000_000.5})])
    check_canonical(found[0].data())
    assert found[0].data()["value"] == "1000000.5"


def rate_guard(limit: int = 3, window_s: int = 10) -> GuardSpec:
    return GuardSpec("RATE-LOGIN", NS + "Rate", "rate_limit", "user.login", None, Decimal(limit), ticks=1,
                     window_s=window_s, criticality="high")


def logins(*offsets_s: float) -> list[Observation]:
    return [obs({}, event_type="user.login", ts_us=T0 + round(s * US)) for s in offsets_s]


def test_rate_limit_allows_exactly_the_limit_within_the_window() -> None:
    assert violations(logins(0, 1, 2), (rate_guard(),)) == []


def test_rate_limit_fires_once_per_excursion_and_rearms() -> None:
    evaluator = GuardEvaluator()
    first = violations(logins(0, 1, 2, 3, 4, 5), (rate_guard(),), evaluator)
    assert len(first) == 1
    assert first[0].value == "4"
    assert first[0].window_s == 10
    assert first[0].level == "critical"
    assert "more than 3 user.login events within 10 s" in first[0].reason
    assert violations(logins(100), (rate_guard(),), evaluator) == []  # quiet again: re-armed
    again = violations(logins(101, 102, 103), (rate_guard(),), evaluator)
    assert len(again) == 1


@pytest.mark.parametrize(("span_s", "violates"), [(10.0, True), (10.000001, False)])
def test_rate_limit_window_is_inclusive(span_s: float, violates: bool) -> None:
    assert bool(violations(logins(0, 3, 6, span_s), (rate_guard(),))) is violates


def test_rate_limit_counts_out_of_order_arrivals_by_timestamp() -> None:
    evaluator = GuardEvaluator()
    assert violations(logins(0, 20, 40), (rate_guard(),), evaluator) == []
    assert len(violations(logins(19, 21, 22), (rate_guard(),), evaluator)) == 1


def test_a_changed_guard_starts_a_new_window() -> None:
    evaluator = GuardEvaluator()
    assert len(violations(logins(0, 1, 2, 3), (rate_guard(3),), evaluator)) == 1
    assert violations(logins(4), (rate_guard(10),), evaluator) == []


@pytest.mark.parametrize(("criticality", "level"), [("critical", "critical"), ("high", "critical"),
                                                    ("medium", "warning"), ("low", "info")])
def test_alert_level_follows_criticality(criticality: str, level: str) -> None:
    assert alert_level(criticality) == level
