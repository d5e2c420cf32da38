"""The seven-stage pipeline (SPEC §6) on the bundled packs: order, fail-fast, every stage's boundaries.

Inputs are built as :class:`~knhk.loop.proposals.ProposalService` builds them (pack root as base, ΔΣ applied,
both schemas extracted, the real shadow replay), so each test says what a user submitting that ΔΣ would see.
"""

from __future__ import annotations

import pytest
from loop_support import (
    DOMAIN,
    LABEL,
    MONDAY_10,
    ONE,
    PROTECTED,
    RANGE,
    SUBCLASS,
    TRUE,
    TYPE,
    guard,
    new_event_type,
    pack_root,
    pipeline_input,
    subject_triples,
    term,
)

from knhk.app.runtime import doctrines_for
from knhk.ontology.core import core_triples
from knhk.ontology.namespaces import KNHK, RDF_PROPERTY, RDFS_CLASS, SH, XSD, iri, literal
from knhk.proposals.delta import DeltaSigma
from knhk.sectors.pack import load_pack
from knhk.validation.doctrines import Approver
from knhk.validation.pipeline import validate
from knhk.validation.shadow import ShadowLimits, memory_estimate_mb
from knhk.validation.stages import STAGES, ValidationReport

APPROVERS = [Approver("sub_alice", frozenset({"validator"}), "finance"),
             Approver("sub_carol", frozenset({"validator"}), "compliance")]
NO_PROTECTED = {s: [d for d in doctrines_for(s) if d.type != "protected"] for s in ("finance", "healthcare")}


def check(report: ValidationReport, outcome: str, failed: str | None = None) -> None:
    assert [s.name for s in report.stages] == list(STAGES)
    assert report.outcome == outcome, report.reason
    assert report.failed_stage == failed
    if failed is not None:
        i = STAGES.index(failed)
        assert all(s.passed and not s.skipped for s in report.stages[:i])
        assert not report.stages[i].passed
        assert not report.stages[i].skipped
        assert all(s.skipped and not s.passed for s in report.stages[i + 1:])
        assert report.reason == report.stages[i].message
    for stage in report.stages:
        assert stage.message
        assert stage.duration_us >= 0


def add_type(sector: str = "finance", local: str = "RefundIssued", event_type: str = "refund.issued") -> DeltaSigma:
    return DeltaSigma.of(new_event_type(sector, local, event_type, [("amount", "decimal", True)]))


def test_well_formed_change_passes_every_stage_in_order() -> None:
    report = validate(pipeline_input("finance", add_type(), approvers=APPROVERS))
    check(report, "approved")
    assert report.passed_stages == list(STAGES)
    assert report.version_bump == "minor"
    assert not report.irreversible
    assert report.shadow["observations"] == 0
    data = report.to_json()
    assert [s["status"] for s in data["stages"]] == ["passed"] * 7
    assert all({"name", "passed", "message", "duration_ms"} <= s.keys() for s in data["stages"])


def test_without_quorum_it_is_held_not_rejected() -> None:
    report = validate(pipeline_input("finance", add_type()))
    check(report, "held")
    assert "FIN-APPROVAL-001" in (report.reason or "")
    assert [p["doctrine_id"] for p in report.pending_approvals] == ["FIN-APPROVAL-001"]


@pytest.mark.parametrize("delta", [
    DeltaSigma(),
    DeltaSigma.of([(term("finance", "Account"), LABEL, literal("Account"))]),          # already there
    DeltaSigma.of(removals=[(term("finance", "Nothing"), LABEL, literal("x"))]),          # not there
])
def test_empty_or_already_applied_change_is_a_no_op(delta: DeltaSigma) -> None:
    report = validate(pipeline_input("finance", delta))
    assert report.outcome == "no_op"
    assert report.stages == []


# -- static ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("additions", "message"), [
    ([(iri(KNHK + "Event"), LABEL, literal("mine now"))], "Σ_core"),
    ([(term("finance", "Thing"), TYPE, iri(RDFS_CLASS))], "has no superclass"),
    ([(term("finance", "flag"), TYPE, iri(RDF_PROPERTY)),
      (term("finance", "flag"), DOMAIN, term("finance", "Account"))],
     "domain and a range"),
    ([(term("finance", "flag"), TYPE, iri(RDF_PROPERTY)), (term("finance", "flag"), RANGE, iri(XSD + "string"))],
     "domain and a range"),
    ([("<relative>", LABEL, literal("x"))], "does not parse"),
    ([("<http://bad iri>", LABEL, literal("x"))], "does not parse"),
    ([("_:b0", LABEL, literal("x"))], "blank nodes"),
    ([(term("finance", "Odd"), TYPE, iri(RDFS_CLASS)), (term("finance", "Odd"), SUBCLASS, iri(KNHK + "Entity")),
      (term("finance", "Odd"), iri(KNHK + "eventType"), literal("payment.created"))], "declared by several classes"),
])
def test_static_stage_refuses_malformed_changes(additions: list[tuple[str, str, str]], message: str) -> None:
    report = validate(pipeline_input("finance", DeltaSigma.of(additions)))
    check(report, "rejected", "static")
    assert message in (report.reason or "")


def test_static_stage_refuses_removing_what_is_not_there() -> None:
    delta = DeltaSigma(removals=((term("finance", "Ghost"), LABEL, literal("boo")),))
    inp = pipeline_input("finance", DeltaSigma.of([(term("finance", "Account"), LABEL, literal("Konto"))]))
    inp.delta = DeltaSigma(inp.delta.additions, delta.removals)
    report = validate(inp)
    check(report, "rejected", "static")
    assert "not in the base" in (report.reason or "")


# -- invariants: Q1, Q3, Q4, Q5 (Q2 has its own module) ----------------------------------------------------
def test_q1_stale_base_fails() -> None:
    report = validate(pipeline_input("finance", add_type(), current_id="e" * 64, approvers=APPROVERS))
    check(report, "rejected", "invariants")
    assert "Q1" in (report.reason or "")
    assert "stale base" in (report.reason or "")


def test_q1_candidate_that_is_its_own_ancestor_fails() -> None:
    inp = pipeline_input("finance", add_type(), approvers=APPROVERS)
    inp.ancestry = frozenset({inp.base_id, inp.candidate_id})
    report = validate(inp)
    check(report, "rejected", "invariants")
    assert "own ancestor" in (report.reason or "")


def test_q1_other_content_stored_under_candidate_id_fails() -> None:
    inp = pipeline_input("finance", add_type(), approvers=APPROVERS)
    inp.stored_candidate_digest = "f" * 64
    check(validate(inp), "rejected", "invariants")


@pytest.mark.parametrize(("ticks", "passes"), [(5, True), (6, True), (7, False)])
def test_q3_hot_path_ticks_at_most_eight(ticks: int, passes: bool) -> None:
    # payment.created already carries FIN-LIMIT-001 (2 ticks): 2 + 6 = 8 passes, 2 + 7 = 9 fails
    delta = DeltaSigma.of(guard("finance", "RATE-PAY", "PaymentCreated", ticks=ticks))
    report = validate(pipeline_input("finance", delta, approvers=APPROVERS))
    if passes:
        check(report, "approved")
    else:
        check(report, "rejected", "invariants")
        assert "Q3: hot-path guards of payment.created cost 9 ticks (limit 8)" in (report.reason or "")


def test_q3_ignores_guards_off_the_hot_path() -> None:
    delta = DeltaSigma.of(guard("finance", "RATE-PAY", "PaymentCreated", ticks=40, hot=False))
    check(validate(pipeline_input("finance", delta, approvers=APPROVERS)), "approved")


def test_q4_q5_limits_from_shadow_limits() -> None:
    delta = add_type()
    base = pack_root("finance")
    exact = memory_estimate_mb(frozenset(delta.apply(base.triples)) | core_triples())
    ok = validate(pipeline_input("finance", delta, approvers=APPROVERS, limits=ShadowLimits(memory_mb=exact)))
    check(ok, "approved")
    over = validate(pipeline_input("finance", delta, approvers=APPROVERS,
                                   limits=ShadowLimits(memory_mb=exact * 0.999)))
    check(over, "rejected", "invariants")
    assert "Q5" in (over.reason or "")
    assert "MB" in (over.reason or "")
    obs = [(f"o{i}", "payment.created", {"account_id": "a", "transaction_amount": 5, "currency": "EUR"})
           for i in range(50)]
    observations = [_obs(*o) for o in obs]
    slo = validate(pipeline_input("finance", delta, approvers=APPROVERS, observations=observations,
                                  limits=ShadowLimits(warm_p95_ms=0.0)))
    check(slo, "rejected", "invariants")
    assert "Q4: shadow warm-path p95" in (slo.reason or "")
    replay = validate(pipeline_input("finance", delta, approvers=APPROVERS, observations=observations,
                                     limits=ShadowLimits(replay_p99_ms=0.0)))
    assert "Q5: shadow replay p99" in (replay.reason or "")


def _obs(obs_id: str, event_type: str, value: dict[str, object]) -> object:
    from knhk.observations.model import parse_observation
    from knhk.ops.clock import format_rfc3339

    return parse_observation({"id": obs_id, "event_type": event_type, "sector": "finance",
                              "timestamp": format_rfc3339(MONDAY_10), "value": value}, received_us=MONDAY_10)


# -- doctrines ------------------------------------------------------------------------------------------
def test_doctrines_stage_blocks_on_mandatory_and_lists_every_violation() -> None:
    sigma = load_pack("finance").sigma
    removals = [*subject_triples(sigma, term("finance", "Account")),
                *subject_triples(sigma, term("finance", "Transaction"))]
    report = validate(pipeline_input("finance", DeltaSigma.of(removals=removals), approvers=APPROVERS))
    check(report, "rejected", "doctrines")
    assert "FIN-PROTECTED-001: protected Account" in (report.reason or "")
    assert "FIN-PROTECTED-001: protected Transaction" in (report.reason or "")


def test_warning_doctrine_proceeds_with_the_warning_in_the_report() -> None:
    saturday_night = MONDAY_10 + 5 * 86_400_000_000 + 13 * 3_600_000_000  # Saturday 23:00
    delta = add_type("logistics", "CustomsCleared", "customs.cleared")
    report = validate(pipeline_input("logistics", delta, now_us=saturday_night))
    check(report, "approved")
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("LOG-WINDOW-001 (warning)")
    assert "Sat 23:00" in report.warnings[0]
    weekday = validate(pipeline_input("logistics", delta))
    assert weekday.outcome == "approved"
    assert weekday.warnings == []


def test_resource_limit_reads_the_candidates_guard_limits() -> None:
    # raising the FIN-LIMIT-001 ceiling above the doctrine's 1,000,000 is refused by the doctrine
    g = term("finance", "LIMIT-2")
    delta = DeltaSigma.of(guard("finance", "LIMIT-2", "PaymentSettled", ticks=1, kind="max_value",
                                on_field="transaction_amount", limit="1000001"))
    report = validate(pipeline_input("finance", delta, approvers=APPROVERS))
    check(report, "rejected", "doctrines")
    assert "FIN-LIMIT-001: transaction_amount 1000001 exceeds the limit 1000000" in (report.reason or "")
    at_limit = DeltaSigma.of(guard("finance", "LIMIT-2", "PaymentSettled", ticks=1, kind="max_value",
                                   on_field="transaction_amount", limit="1000000"))
    check(validate(pipeline_input("finance", at_limit, approvers=APPROVERS)), "approved")
    assert g


# -- guards ---------------------------------------------------------------------------------------------
def _narrow(sector: str, prop: str, new_range: str = "integer") -> DeltaSigma:
    p = term(sector, prop)
    old = [t for t in load_pack(sector).sigma if t[0] == p and t[1] == RANGE]
    return DeltaSigma.of([(p, RANGE, iri(XSD + new_range))], old)


@pytest.mark.parametrize(("sector", "delta", "item"), [
    ("finance", DeltaSigma.of(removals=subject_triples(load_pack("finance").sigma, term("finance", "Account"))),
     "finance#Account"),
    ("finance", _narrow("finance", "approval_required"), "finance#approval_required"),
    ("finance", DeltaSigma.of(removals=[(term("finance", "approval_required"), DOMAIN, term("finance", "Account"))]),
     "finance#approval_required"),
    ("finance", DeltaSigma.of(removals=[(term("finance", "Account"), PROTECTED, TRUE)]), "finance#Account"),
    ("healthcare", _narrow("healthcare", "encryption_required", "string"), "healthcare#encryption_required"),
    ("healthcare", DeltaSigma.of(removals=subject_triples(load_pack("healthcare").sigma,
                                                          term("healthcare", "MedicalRecord"))), "MedicalRecord"),
])
def test_guards_stage_keeps_the_protected_profile(sector: str, delta: DeltaSigma, item: str) -> None:
    report = validate(pipeline_input(sector, delta, doctrines=NO_PROTECTED[sector], approvers=APPROVERS))
    check(report, "rejected", "guards")
    assert item in (report.reason or "")
    # with the bundled protected doctrine, the same change is stopped one stage earlier
    report = validate(pipeline_input(sector, delta, approvers=APPROVERS))
    check(report, "rejected", "doctrines")


def test_protected_property_keeps_its_shape_constraints() -> None:
    sigma = load_pack("healthcare").sigma
    shape = term("healthcare", "PatientShape")
    removals = []
    for _, p, ps in subject_triples(sigma, shape):
        if p == iri(SH + "property") and (ps, iri(SH + "path"), term("healthcare", "encryption_required")) in sigma:
            removals += [(shape, p, ps), *subject_triples(sigma, ps)]
    assert removals
    report = validate(pipeline_input("healthcare", DeltaSigma.of(removals=removals),
                                     doctrines=NO_PROTECTED["healthcare"]))
    check(report, "rejected", "guards")
    assert "encryption_required" in (report.reason or "")


@pytest.mark.parametrize("change", ["remove", "raise_limit", "add_value"])
def test_immutable_guard_cannot_change(change: str) -> None:
    g = term("finance", "FIN-LIMIT-001")
    limit = [t for t in load_pack("finance").sigma if t[0] == g and t[1] == iri(KNHK + "limit")]
    delta = {
        "remove": DeltaSigma.of(removals=subject_triples(load_pack("finance").sigma, g)),
        "raise_limit": DeltaSigma.of([(g, iri(KNHK + "limit"), literal("900000", XSD + "decimal"))], limit),
        "add_value": DeltaSigma.of([(g, iri(KNHK + "hotPath"), literal("false", XSD + "boolean"))]),
    }[change]
    report = validate(pipeline_input("finance", delta, approvers=APPROVERS))
    check(report, "rejected", "guards")
    assert "immutable guard <https://knhk.dev/ns/finance#FIN-LIMIT-001>" in (report.reason or "")


def test_mutable_guard_may_change() -> None:
    g = term("healthcare", "HC-LAB-001")
    limit = [t for t in load_pack("healthcare").sigma if t[0] == g and t[1] == iri(KNHK + "limit")]
    delta = DeltaSigma.of([(g, iri(KNHK + "limit"), literal("90000", XSD + "decimal"))], limit)
    report = validate(pipeline_input("healthcare", delta,
                                     approvers=[Approver("sub_erin", frozenset({"doctor"}), "healthcare")]))
    check(report, "approved")
    assert report.version_bump == "major"
    assert report.irreversible


# -- performance ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("classes", "properties", "shapes", "cost"), [
    (0, 0, 0, 0), (1, 0, 0, 1), (0, 1, 0, 1), (0, 2, 0, 1), (0, 3, 0, 2), (0, 0, 1, 3), (1, 1, 2, 8), (2, 4, 1, 7),
])
def test_cost_model(classes: int, properties: int, shapes: int, cost: int) -> None:
    """ceil(classes×1.0 + properties×0.5 + shapes×3.0) over what a change adds or removes."""
    triples = [(term("finance", f"C{i}"), TYPE, iri(RDFS_CLASS)) for i in range(classes)]
    triples += [(term("finance", f"p{i}"), TYPE, iri(RDF_PROPERTY)) for i in range(properties)]
    triples += [(term("finance", f"S{i}"), TYPE, iri(SH + "NodeShape")) for i in range(shapes)]
    assert DeltaSigma.of(triples).cost() == cost
    assert DeltaSigma.of(removals=triples).cost() == cost


@pytest.mark.parametrize(("budget", "passes"), [(9, True), (8, True), (7, False), (0, False)])
def test_performance_budget(budget: int, passes: bool) -> None:
    # 1 class + 1 property + 2 shapes (node shape, property shape): ceil(1 + 0.5 + 6) = 8
    fields = [("amount", "decimal", True)]
    delta = DeltaSigma.of([*new_event_type("finance", "Refund", "refund.issued", fields),
                           (term("finance", "RefundShape-amount"), TYPE, iri(SH + "PropertyShape"))])
    assert delta.cost() == 8
    report = validate(pipeline_input("finance", delta, approvers=APPROVERS, budget=budget))
    if passes:
        check(report, "approved")
    else:
        check(report, "rejected", "performance")
        assert f"change cost 8 exceeds the remaining budget {budget}" in (report.reason or "")


# -- rollback and compatibility ------------------------------------------------------------------------
def test_removals_are_irreversible_and_major_but_pass_rollback() -> None:
    label = (term("finance", "PaymentCreated"), LABEL, literal("Payment created"))
    report = validate(pipeline_input("finance", DeltaSigma.of(removals=[label]), approvers=APPROVERS))
    check(report, "approved")
    rollback = report.stages[STAGES.index("rollback")]
    assert rollback.passed
    assert rollback.details["irreversible"] is True
    assert "irreversible" in rollback.message
    assert report.irreversible
    assert report.version_bump == "major"
    compat = report.stages[STAGES.index("compatibility")]
    assert "major" in compat.message


def test_narrowing_is_a_breaking_change() -> None:
    report = validate(pipeline_input("finance", _narrow("finance", "channel"), approvers=APPROVERS))
    check(report, "approved")
    assert report.version_bump == "major"


@pytest.mark.parametrize("additions", [
    [(term("finance", "Child"), TYPE, iri(RDFS_CLASS)), (term("finance", "Child"), SUBCLASS, term("finance", "Nope"))],
    [(term("finance", "note"), TYPE, iri(RDF_PROPERTY)), (term("finance", "note"), DOMAIN, term("finance", "Ghost")),
     (term("finance", "note"), RANGE, iri(XSD + "string"))],
    [(term("finance", "XShape"), TYPE, iri(SH + "NodeShape")),
     (term("finance", "XShape"), iri(SH + "targetClass"), term("finance", "Missing"))],
])
def test_dangling_reference_fails_compatibility(additions: list[tuple[str, str, str]]) -> None:
    report = validate(pipeline_input("finance", DeltaSigma.of(additions), approvers=APPROVERS))
    check(report, "rejected", "compatibility")
    assert "dangling references" in (report.reason or "")


def test_removing_a_class_still_referenced_fails_compatibility() -> None:
    sigma = load_pack("logistics").sigma
    route = term("logistics", "Route")
    prop = term("logistics", "route_ref")
    delta = DeltaSigma.of([(prop, TYPE, iri(RDF_PROPERTY)), (prop, DOMAIN, route), (prop, RANGE, iri(XSD + "string"))],
                          subject_triples(sigma, route))
    report = validate(pipeline_input("logistics", delta))
    check(report, "rejected", "compatibility")
    assert "logistics#Route" in (report.reason or "")


def test_one_required_field_shape_has_min_count() -> None:
    # sanity of the helper the other tests rely on: a required field gets sh:minCount 1
    triples = new_event_type("finance", "X", "x.y", [("a", "string", True), ("b", "string", False)])
    assert sum(1 for t in triples if t[2] == ONE) == 1
