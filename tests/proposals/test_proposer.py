"""The rule-based proposer (SPEC §5): datatype inference, what a drift or rate finding turns into, and the
promise that its output passes the pipeline it is submitted to."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loop_support import DOMAIN, RANGE, SUBCLASS, TYPE, pipeline_input, term

from knhk.ontology.extract import extract_schema
from knhk.ontology.namespaces import KNHK, OWL_CLASS, RDFS_CLASS, SH, XSD, iri, literal
from knhk.proposals.proposer import (
    DriftFinding,
    ObservedField,
    RateFinding,
    infer_datatype,
    propose_drift,
    propose_rate_limit,
)
from knhk.sectors.pack import load_pack
from knhk.validation.doctrines import Approver
from knhk.validation.pipeline import validate

APPROVERS = [Approver("sub_alice", frozenset({"validator"}), "finance"),
             Approver("sub_carol", frozenset({"validator"}), "compliance")]


def sigma(sector: str = "finance") -> frozenset[tuple[str, str, str]]:
    return frozenset(load_pack(sector).sigma)


def schema(sector: str = "finance") -> object:
    return extract_schema(sector, "root", sigma(sector))


@pytest.mark.parametrize(("kinds", "samples", "datatype"), [
    ({"boolean"}, (True, False), "boolean"),
    ({"integer"}, (1, 2, -3), "integer"),
    ({"integer", "number"}, (1, 2.5), "decimal"),
    ({"number"}, (2.5,), "decimal"),
    ({"integer", "null"}, (1, None), "integer"),                 # nulls say nothing about the type
    ({"string"}, ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.123+01:00"), "dateTime"),
    ({"string"}, ("2026-11-23T10:00:00Z", "tomorrow"), "string"),
    ({"string"}, ("2026-11-23 10:00:00Z",), "string"),            # not an xsd:dateTime lexical form
    ({"string"}, ("2026-13-45T10:00:00Z",), "string"),            # looks like one, is no date
    ({"string"}, ("EUR", "USD"), "string"),
    ({"string", "integer"}, ("a", 1), "string"),                  # mixed kinds
    ({"boolean", "integer"}, (True, 1), "string"),
    ({"object"}, ({"a": 1},), "string"),
    ({"null"}, (None,), "string"),
])
def test_datatype_inference(kinds: set[str], samples: tuple[object, ...], datatype: str) -> None:
    assert infer_datatype(ObservedField("f", frozenset(kinds), samples)) == XSD + datatype


def refund(*fields: ObservedField, event_type: str = "refund.issued") -> DriftFinding:
    return DriftFinding(event_type, True, fields, observations=20)


def test_new_event_type_becomes_a_class_with_a_closed_shape() -> None:
    finding = refund(ObservedField("amount", frozenset({"number"}), (12.5,), present_in_all=True),
                     ObservedField("note", frozenset({"string"}), ("x",), present_in_all=False))
    plan = propose_drift("finance", sigma(), schema(), finding)  # type: ignore[arg-type]
    assert plan is not None
    add = set(plan.delta.additions)
    assert not plan.delta.removals
    cls = term("finance", "RefundIssued")
    assert {(cls, TYPE, iri(RDFS_CLASS)), (cls, TYPE, iri(OWL_CLASS)), (cls, SUBCLASS, iri(KNHK + "Event")),
            (cls, iri(KNHK + "eventType"), literal("refund.issued"))} <= add
    shape = term("finance", "RefundIssuedShape")
    assert (shape, iri(SH + "targetClass"), cls) in add
    assert (shape, iri(SH + "closed"), literal("true", XSD + "boolean")) in add
    new = extract_schema("finance", "new", plan.delta.apply(sigma()))
    spec = new.event_types["refund.issued"]
    assert {n: (f.datatype, f.required) for n, f in spec.fields.items()} == {
        "amount": (XSD + "decimal", True), "note": (XSD + "string", False)}
    assert not any(t[0].startswith("_:") or t[2].startswith("_:") for t in add)
    assert "refund.issued" in plan.rationale
    assert "amount: decimal (required)" in plan.rationale
    assert plan.delta.summary().classes_added == (cls,)


@pytest.mark.parametrize(("name", "kinds", "reused"), [
    ("currency", {"string"}, "currency"),                        # same name, same range: reuse fin:currency
    ("currency", {"integer"}, "PaymentSettled_currency"),        # same name, other range: a new IRI
    ("memo", {"string"}, "memo"),                                # a name nobody declares: minted as is
])
def test_new_field_on_an_existing_type(name: str, kinds: set[str], reused: str) -> None:
    finding = DriftFinding("payment.settled", False, (ObservedField(name, frozenset(kinds), ("x",), True),), 5)
    plan = propose_drift("finance", sigma(), schema(), finding)  # type: ignore[arg-type]
    assert plan is not None
    prop = term("finance", reused)
    add = set(plan.delta.additions)
    assert (prop, DOMAIN, term("finance", "PaymentSettled")) in add
    existing = any(t[0] == prop for t in sigma())
    assert ((prop, TYPE, iri("http://www.w3.org/1999/02/22-rdf-syntax-ns#Property")) in add) is not existing
    # the property shape joins the type's existing closed shape, so the new field is allowed there
    shape = term("finance", "PaymentSettledShape")
    assert any(s == shape and p == iri(SH + "property") for s, p, _ in add)
    new = extract_schema("finance", "new", plan.delta.apply(sigma()))
    assert new.event_types["payment.settled"].fields[name].property_iri == prop[1:-1]


def test_reuse_is_deterministic_when_several_properties_share_a_name() -> None:
    base = set(sigma())
    twin = term("finance", "AaaCurrency")
    base |= {(twin, TYPE, iri("http://www.w3.org/1999/02/22-rdf-syntax-ns#Property")),
             (twin, DOMAIN, term("finance", "PaymentError")), (twin, RANGE, iri(XSD + "string")),
             (twin, iri(KNHK + "fieldName"), literal("currency"))}
    frozen = frozenset(base)
    finding = DriftFinding("payment.settled", False, (ObservedField("currency", frozenset({"string"}), (), True),),
                           5)
    reordered = frozenset(sorted(base, reverse=True))
    plans = [propose_drift("finance", b, extract_schema("finance", "b", b), finding) for b in (frozen, reordered)]
    assert plans[0] is not None
    assert plans[1] is not None
    assert plans[0].delta == plans[1].delta
    plan = plans[0]
    assert (twin, DOMAIN, term("finance", "PaymentSettled")) in plan.delta.additions  # smallest IRI wins


def test_declared_fields_propose_nothing() -> None:
    finding = DriftFinding("payment.created", False,
                           (ObservedField("currency", frozenset({"string"}), ("EUR",), True),), 3)
    assert propose_drift("finance", sigma(), schema(), finding) is None  # type: ignore[arg-type]


def test_class_names_never_collide() -> None:
    finding = refund(event_type="payment.created.v2")
    base = set(sigma()) | {(term("finance", "PaymentCreatedV2"), iri(RDFS_CLASS), literal("taken"))}
    frozen = frozenset(base)
    plan = propose_drift("finance", frozen, extract_schema("finance", "b", frozen), finding)
    assert plan is not None
    assert plan.delta.summary().classes_added == (term("finance", "PaymentCreatedV22"),)


@pytest.mark.parametrize(("count", "limit"), [(101, 152), (200, 300), (209, 314), (1, 2), (0, 1)])
def test_rate_limit_guard(count: int, limit: int) -> None:
    plan = propose_rate_limit("finance", sigma(), schema(), RateFinding("payment.created", count, 60))  # type: ignore[arg-type]
    assert plan is not None
    assert limit == max(1, math.ceil(1.5 * count))
    new = extract_schema("finance", "new", plan.delta.apply(sigma()))
    (g,) = [g for g in new.guards if g.kind == "rate_limit"]
    assert (g.event_type, g.limit, g.ticks, g.window_s, g.hot_path) == ("payment.created", limit, 1, 60, True)
    assert plan.delta.summary().guards_added == (iri(g.iri),)
    # once the guard exists the same finding proposes nothing
    assert propose_rate_limit("finance", frozenset(plan.delta.apply(sigma())), new,
                              RateFinding("payment.created", count, 60)) is None
    # nor for a type the snapshot does not declare
    assert propose_rate_limit("finance", sigma(), schema(), RateFinding("nobody.knows", count, 60)) is None  # type: ignore[arg-type]


# -- the proposer's output passes the pipeline --------------------------------------------------------------
KINDS = st.sets(st.sampled_from(["string", "integer", "number", "boolean", "null"]), min_size=1, max_size=3)
SAMPLE = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.just("2026-11-23T10:00:00Z"))
NAME = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
FIELD = st.builds(ObservedField, NAME, KINDS.map(frozenset), st.tuples(SAMPLE, SAMPLE), st.booleans())
EVENT_TYPE = st.from_regex(r"[a-z][a-z0-9]{0,6}([._:-][a-z0-9]{1,6}){0,2}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(sector=st.sampled_from(["finance", "healthcare", "manufacturing", "logistics"]),
       event_type=st.one_of(EVENT_TYPE, st.sampled_from(["payment.created", "lab.result", "machine.reading",
                                                          "shipment.dispatched"])),
       fields=st.lists(FIELD, max_size=5, unique_by=lambda f: f.name))
def test_every_drift_proposal_passes_the_pipeline(sector: str, event_type: str, fields: list[ObservedField]) -> None:
    base = sigma(sector)
    current = extract_schema(sector, "root", base)
    plan = propose_drift(sector, base, current, DriftFinding(event_type, event_type not in current.event_types,
                                                             tuple(fields), 5))
    if plan is None:
        spec = current.event_types.get(event_type)
        assert spec is not None
        assert all(f.name in spec.fields for f in fields)
        return
    approvers = [*APPROVERS, Approver("sub_erin", frozenset({"doctor"}), "healthcare")]
    report = validate(pipeline_input(sector, plan.delta, approvers=approvers))
    assert report.outcome == "approved", (report.failed_stage, report.reason)
    assert report.version_bump == "minor"


@settings(max_examples=20, deadline=None)
@given(sector=st.sampled_from(["finance", "healthcare", "manufacturing", "logistics"]),
       count=st.integers(min_value=101, max_value=100_000))
def test_every_rate_limit_proposal_passes_the_pipeline(sector: str, count: int) -> None:
    base = sigma(sector)
    current = extract_schema(sector, "root", base)
    for event_type in sorted(current.event_types):
        plan = propose_rate_limit(sector, base, current, RateFinding(event_type, count, 60))
        assert plan is not None
        approvers = [*APPROVERS, Approver("sub_erin", frozenset({"doctor"}), "healthcare")]
        report = validate(pipeline_input(sector, plan.delta, approvers=approvers))
        assert report.outcome == "approved", (event_type, report.failed_stage, report.reason)
