"""Hot-path guards fail closed (SPEC §2), on both backends, through the installation's real ingest.

A ``resource_limit`` doctrine holds for every observation of its sector that carries the resource, whatever the
event type; the value is read as a number from any JSON form (integer, float, exponent, numeric string); where a
limit applies and the value cannot be read as a number, that is itself a violation. The tables are the forms a
hostile review of the product tried (27 over-limit finance amounts, 14 of which raised no receipt before this
fix; 11 over-limit ``defect_rate`` forms, 5 of which raised none); ``evaded_before`` records which.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knhk.app.runtime import Runtime

_ids = itertools.count()

# (event type, JSON text of the value, evaded before the fix)
FINANCE_FORMS: list[tuple[str, str, bool]] = [
    ("payment.created", '{"transaction_amount": 1000001}', False),
    ("payment.created", '{"transaction_amount": 5000000}', False),
    ("payment.created", '{"transaction_amount": 1000001.0}', False),
    ("payment.created", '{"transaction_amount": 1000000.01}', False),
    ("payment.created", '{"transaction_amount": 1000000.5}', False),
    ("payment.created", '{"transaction_amount": 1.000001e6}', False),
    ("payment.created", '{"transaction_amount": 5E6}', False),
    ("payment.created", '{"transaction_amount": 1e7}', False),
    ("payment.created", '{"transaction_amount": 10000010e-1}', False),
    ("payment.created", '{"transaction_amount": 1.0e+7}', False),
    ("payment.created", '{"transaction_amount": 9007199254740993}', False),
    ("payment.created", '{"transaction_amount": 9223372036854775807}', False),
    ("payment.created", '{"transaction_amount": 1e300}', False),
    ("payment.created", '{"transaction_amount": "1000001"}', True),
    ("payment.created", '{"transaction_amount": "5000000.00"}', True),
    ("payment.created", '{"transaction_amount": "1.000001e6"}', True),
    ("payment.created", '{"transaction_amount": " 5000000 "}', True),
    ("payment.created", '{"transaction_amount": "1,000,001"}', True),
    ("payment.created", '{"transaction_amount": true}', True),
    ("payment.created", '{"transaction_amount": null}', True),
    ("payment.created", '{"transaction_amount": {"amount": 5000000}}', True),
    ("payment.created", '{"transaction_amount": [5000000]}', True),
    ("payment.settled", '{"account_id": "A-1", "transaction_amount": 5000000}', True),
    ("payment.settled", '{"account_id": "A-1", "transaction_amount": 5e6}', True),
    ("payment.error", '{"error_code": "E1", "transaction_amount": 5000000}', True),
    ("account.opened", '{"account_id": "A-1", "transaction_amount": 1000001}', True),
    ("payment.refunded", '{"transaction_amount": 5000000}', True),
]

MANUFACTURING_FORMS: list[tuple[str, str, bool]] = [
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": 0.5, "inspected_units": 10}', False),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": 0.0011, "inspected_units": 10}', False),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": 1, "inspected_units": 10}', False),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": 5e-3, "inspected_units": 10}', False),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": 1E-2, "inspected_units": 10}', False),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": 0.00100001, "inspected_units": 10}', False),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": "0.5", "inspected_units": 10}', True),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": "5e-3", "inspected_units": 10}', True),
    ("quality.inspection", '{"batch_id": "B1", "defect_rate": null, "inspected_units": 10}', True),
    ("machine.reading", '{"machine_id": "M1", "temperature": 20, "defect_rate": 0.5}', True),
    ("quality.reinspection", '{"batch_id": "B1", "defect_rate": 0.5}', True),
]

WITHIN: list[tuple[str, str, str]] = [
    ("finance", "payment.created", '{"transaction_amount": 1000000}'),
    ("finance", "payment.created", '{"transaction_amount": 1e6}'),
    ("finance", "payment.created", '{"transaction_amount": "1000000.000"}'),
    ("finance", "payment.settled", '{"account_id": "A-1", "transaction_amount": 999999.99}'),
    ("finance", "payment.error", '{"error_code": "E1"}'),
    ("manufacturing", "quality.inspection", '{"batch_id": "B1", "defect_rate": 0.001, "inspected_units": 1}'),
    ("manufacturing", "machine.reading", '{"machine_id": "M1", "temperature": 5000}'),
]


def _ingest(rt: Runtime, sector: str, event_type: str, value: Any) -> str:
    obs_id = f"form-{next(_ids)}"
    rt.ingestor.ingest({"id": obs_id, "event_type": event_type, "sector": sector, "value": value})
    return obs_id


def _violated(rt: Runtime, obs_id: str) -> list[Any]:
    return [e for e in rt.ledger.entries("receipts", kind="guard.violated", limit=10_000)
            if e.fields["subject"] == obs_id]


def _table(rt: Runtime, sector: str, forms: list[tuple[str, str, bool]], guard_id: str) -> None:
    missed = []
    for event_type, text, _evaded_before in forms:
        obs_id = _ingest(rt, sector, event_type, orjson.loads(text))
        found = _violated(rt, obs_id)
        if [e.fields["data"]["guard_id"] for e in found] != [guard_id]:
            missed.append(f"{event_type} {text}: {[e.fields['data'] for e in found]}")
    assert not missed, "over-limit forms without exactly one guard.violated receipt:\n" + "\n".join(missed)


def test_every_form_of_an_over_limit_finance_amount_raises_a_receipt(runtime: Runtime) -> None:
    assert len(FINANCE_FORMS) == 27
    assert sum(e for _, _, e in FINANCE_FORMS) == 14
    _table(runtime, "finance", FINANCE_FORMS, "FIN-LIMIT-001")
    assert runtime.ledger.verify("receipts").ok


def test_every_form_of_an_over_limit_defect_rate_raises_a_receipt(runtime: Runtime) -> None:
    assert len(MANUFACTURING_FORMS) == 11
    assert sum(e for _, _, e in MANUFACTURING_FORMS) == 5
    _table(runtime, "manufacturing", MANUFACTURING_FORMS, "ISO9001-QUALITY-001")


def test_values_within_the_limit_or_without_the_resource_raise_nothing(runtime: Runtime) -> None:
    for sector, event_type, text in WITHIN:
        obs_id = _ingest(runtime, sector, event_type, orjson.loads(text))
        assert _violated(runtime, obs_id) == [], f"{event_type} {text}"


def test_an_unreadable_value_is_receipted_as_such(runtime: Runtime) -> None:
    obs_id = _ingest(runtime, "finance", "payment.settled", {"account_id": "A", "transaction_amount": "lots"})
    receipt, = _violated(runtime, obs_id)
    data = receipt.fields["data"]
    assert (data["guard_id"], data["field"], data["event_type"], data["unreadable"]) == (
        "FIN-LIMIT-001", "transaction_amount", "payment.settled", True)
    assert data["value"] == '"lots"'
    assert "cannot be read as a number" in receipt.fields["reason"]
    alert = [e for e in runtime.ledger.entries("receipts", kind="alert.raised", limit=1000)
             if e.fields["subject"] == obs_id]
    assert [a.fields["outcome"] for a in alert] == ["critical"]


LIMIT = Decimal(1_000_000)
EVENT_TYPES = st.one_of(st.sampled_from(["payment.created", "payment.settled", "payment.error", "account.opened"]),
                        st.from_regex(r"[a-z]{1,8}\.[a-z]{1,8}", fullmatch=True))
DELTAS = st.sampled_from([Decimal(0), Decimal("0.01"), Decimal("0.001"), Decimal(1), Decimal(1000)])


@st.composite
def amounts(draw: st.DrawFn) -> tuple[Any, bool]:
    """(a JSON value of transaction_amount, whether it must be receipted)."""
    if draw(st.integers(0, 9)) == 0:  # something that is not a number in any form
        junk = draw(st.sampled_from(["", "n/a", "1,000,001", "0x10", "NaN", "Infinity", "-Infinity", "1e", "--5"]))
        return draw(st.sampled_from([junk, True, False, None, [1], {"v": 1}])), True
    amount = LIMIT + draw(DELTAS) * draw(st.sampled_from([-1, 1]))
    form = draw(st.sampled_from(["int", "float", "exponent", "string", "string-exponent", "padded"]))
    if form == "int":
        value: Any = int(amount) if amount == amount.to_integral_value() else float(amount)
    elif form == "float":
        value = float(amount)
    elif form == "exponent":
        value = orjson.loads(f"{amount:E}".encode())
    elif form == "string":
        value = format(amount, "f")
    elif form == "string-exponent":
        value = f"{amount:e}"
    else:
        value = f"  {format(amount, 'f')}\t"
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    return value, exact > LIMIT


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_type=EVENT_TYPES, amount=amounts())
def test_property_a_receipt_is_written_iff_over_the_limit_or_unreadable(
        runtime: Runtime, event_type: str, amount: tuple[Any, bool]) -> None:
    value, must_violate = amount
    obs_id = _ingest(runtime, "finance", event_type, {"transaction_amount": value})
    found = _violated(runtime, obs_id)
    assert bool(found) is must_violate, f"{event_type} {value!r}: {[e.fields['data'] for e in found]}"
    assert len(found) <= 1


def test_a_guard_added_by_a_promotion_fails_closed_too(runtime: Runtime) -> None:
    from knhk.ontology.namespaces import KNHK, RDF_TYPE, XSD, iri, literal
    from knhk.ontology.snapshot import derive

    fin = "https://knhk.dev/ns/finance#"
    guard = iri(fin + "FIN-MIN-001")
    added = [(guard, iri(RDF_TYPE), iri(KNHK + "Guard")),
             (guard, iri(KNHK + "guardId"), literal("FIN-MIN-001")),
             (guard, iri(KNHK + "guardKind"), literal("min_value")),
             (guard, iri(KNHK + "appliesTo"), iri(fin + "PaymentSettled")),
             (guard, iri(KNHK + "onField"), literal("transaction_amount")),
             (guard, iri(KNHK + "limit"), literal("1", XSD + "decimal")),
             (guard, iri(KNHK + "ticks"), literal("1", XSD + "integer"))]
    base = runtime.registry.current("finance")
    assert base is not None
    child = runtime.registry.store(derive(base, additions=added, origin="operator", created_us=base.created_us + 1))
    runtime.registry.promote("finance", child.id, actor="admin@example.org", force=True, reason="test guard")
    for value, guards in [("0.5", ["FIN-MIN-001"]), ("one", ["FIN-LIMIT-001", "FIN-MIN-001"]), (2, [])]:
        obs_id = _ingest(runtime, "finance", "payment.settled", {"account_id": "A", "transaction_amount": value})
        assert sorted(e.fields["data"]["guard_id"] for e in _violated(runtime, obs_id)) == guards, value
