"""Guard changes through ordinary ΔΣs (SPEC §6–§7): any ΔΣ that weakens, removes or re-targets a guard is a
guard relaxation, found by one pure function that says exactly what changed; such a ΔΣ is never approved without
people (it is held, the reason naming the relaxation); an ``immutable`` guard cannot be changed by any ΔΣ, and no
ΔΣ may leave an immutable guard covering less than before (e.g. moving ``payment.created`` to a new class)."""

from __future__ import annotations

import pytest
from loop_support import MONDAY_10, TYPE, observation, pack_root, pipeline_input, plan, subject_triples, term

from knhk.app.runtime import Runtime
from knhk.ontology.extract import extract_schema
from knhk.ontology.namespaces import KNHK, OWL_CLASS, RDFS, RDFS_CLASS, XSD, iri, literal
from knhk.ontology.rdf import Triple
from knhk.ops.clock import ManualClock
from knhk.proposals.delta import DeltaSigma
from knhk.sectors.pack import load_pack
from knhk.validation.doctrines import Approver
from knhk.validation.guard_changes import GuardChange, guard_changes
from knhk.validation.pipeline import validate

ISO = "ISO9001-QUALITY-001"
BOOL = XSD + "boolean"


def _g(sector: str, guard_id: str) -> str:
    return term(sector, guard_id)


def _value(sector: str, guard_id: str, prop: str) -> list[Triple]:
    g = _g(sector, guard_id)
    return [t for t in load_pack(sector).sigma if t[0] == g and t[1] == iri(KNHK + prop)]


def _replace(sector: str, guard_id: str, prop: str, new: str) -> DeltaSigma:
    return DeltaSigma.of([(_g(sector, guard_id), iri(KNHK + prop), new)], _value(sector, guard_id, prop))


def iso_changes() -> dict[str, tuple[DeltaSigma, list[tuple[str, str | None, str | None, bool]]]]:
    """ΔΣ name → (ΔΣ on the manufacturing pack, the changes guard_changes must report for ISO9001-QUALITY-001)."""
    g = _g("manufacturing", ISO)
    return {
        "hot_path_false": (_replace("manufacturing", ISO, "hotPath", literal("false", BOOL)),
                           [("hot_path", "true", "false", True)]),
        "hot_path_second_value": (DeltaSigma.of([(g, iri(KNHK + "hotPath"), literal("false", BOOL))]),
                                  [("hot_path", "true", "false", True)]),
        "deleted": (DeltaSigma.of(removals=subject_triples(load_pack("manufacturing").sigma, g)),
                    [("removed", ISO, None, True)]),
        "retargeted_field": (_replace("manufacturing", ISO, "onField", literal("scrap_rate")),
                             [("field", "defect_rate", "scrap_rate", True)]),
        "flipped_to_min": (_replace("manufacturing", ISO, "guardKind", literal("min_value")),
                           [("kind", "max_value", "min_value", True)]),
        "raised_max": (_replace("manufacturing", ISO, "limit", literal("0.5", XSD + "decimal")),
                       [("limit", "0.001", "0.5", True)]),
        "lowered_max": (_replace("manufacturing", ISO, "limit", literal("0.0005", XSD + "decimal")),
                        [("limit", "0.001", "0.0005", False)]),
        "other_event_type": (_replace("manufacturing", ISO, "appliesTo", term("manufacturing", "MachineReading")),
                             [("event_type", "quality.inspection", "machine.reading", True)]),
        "criticality_low": (_replace("manufacturing", ISO, "criticality", literal("low")),
                            [("criticality", "critical", "low", True)]),
        "made_immutable": (_replace("manufacturing", ISO, "immutable", literal("true", BOOL)),
                           [("immutable", "false", "true", False)]),
    }


@pytest.mark.parametrize("name", sorted(iso_changes()))
def test_guard_changes_reports_exactly_what_changed(name: str) -> None:
    delta, expected = iso_changes()[name]
    base = pack_root("manufacturing")
    before = extract_schema("manufacturing", base.id, base.triples)
    after = extract_schema("manufacturing", "c" * 64, delta.apply(base.triples))
    found = guard_changes(before, after)
    assert [(c.aspect, c.before, c.after, c.relaxation) for c in found.changes] == expected
    assert all(c.guard_id == ISO for c in found.changes)
    assert found.relaxations == tuple(c for c in found.changes if c.relaxation)


def test_adding_a_guard_is_no_relaxation_and_nothing_is_no_change() -> None:
    base = pack_root("logistics")
    before = extract_schema("logistics", base.id, base.triples)
    assert guard_changes(before, before).changes == ()
    g = term("logistics", "LOG-RATE-001")
    added = [(g, TYPE, iri(KNHK + "Guard")), (g, iri(KNHK + "guardId"), literal("LOG-RATE-001")),
             (g, iri(KNHK + "guardKind"), literal("rate_limit")),
             (g, iri(KNHK + "limit"), literal("5", XSD + "decimal")),
             (g, iri(KNHK + "ticks"), literal("1", XSD + "integer"))]
    after = extract_schema("logistics", "c" * 64, DeltaSigma.of(added).apply(base.triples))
    found = guard_changes(before, after)
    assert [(c.guard_id, c.aspect, c.relaxation) for c in found.changes] == [("LOG-RATE-001", "added", False)]
    assert isinstance(found.changes[0], GuardChange)


@pytest.mark.parametrize("name", sorted(n for n, (_, ch) in iso_changes().items()
                                         if any(c[3] for c in ch) and n != "raised_max"))
def test_a_relaxing_delta_is_held_for_people_naming_the_relaxation(name: str) -> None:
    delta, expected = iso_changes()[name]
    report = validate(pipeline_input("manufacturing", delta))
    assert report.outcome == "held", (report.reason, report.failed_stage)
    assert "guard relaxation" in (report.reason or "")
    assert ISO in (report.reason or "")
    assert expected[0][0] in (report.reason or "")
    assert [p["doctrine_id"] for p in report.pending_approvals] == ["GUARD-RELAXATION"]
    guards_stage = next(s for s in report.stages if s.name == "guards")
    assert guards_stage.details["relaxations"][0]["guard_id"] == ISO


def test_raising_a_limit_beyond_its_doctrine_is_rejected_and_below_none_is_held() -> None:
    beyond = validate(pipeline_input("manufacturing", iso_changes()["raised_max"][0]))
    assert (beyond.outcome, beyond.failed_stage) == ("rejected", "doctrines")
    lab = validate(pipeline_input("healthcare", _replace("healthcare", "HC-LAB-001", "limit",
                                                         literal("200000", XSD + "decimal")),
                                  approvers=[Approver("sub_erin", frozenset({"doctor"}), "healthcare")]))
    assert lab.outcome == "held"
    assert "HC-LAB-001 limit 100000 → 200000" in (lab.reason or "")
    assert [p["doctrine_id"] for p in lab.pending_approvals] == ["GUARD-RELAXATION"]


def test_two_distinct_approvers_other_than_the_author_release_a_relaxation() -> None:
    delta, _ = iso_changes()["hot_path_false"]
    one = [Approver("sub_ann", frozenset({"validator"}), "manufacturing")]
    author_too = [*one, Approver("sub_author", frozenset({"validator"}), "manufacturing")]
    two = [*one, Approver("sub_bob", frozenset({"validator"}), "manufacturing")]
    assert validate(pipeline_input("manufacturing", delta, approvers=one)).outcome == "held"
    assert validate(pipeline_input("manufacturing", delta, approvers=author_too)).outcome == "rejected"
    assert validate(pipeline_input("manufacturing", delta, approvers=two)).outcome == "approved"


def test_tightening_a_guard_needs_no_extra_people() -> None:
    delta, _ = iso_changes()["lowered_max"]
    report = validate(pipeline_input("manufacturing", delta))
    assert report.outcome == "approved", report.reason


APPROVERS = [Approver("sub_alice", frozenset({"validator"}), "finance"),
             Approver("sub_carol", frozenset({"validator"}), "compliance")]


def move_payment_created() -> DeltaSigma:
    """``payment.created`` moved to a new class; the old class (which FIN-LIMIT-001 names) gets another type."""
    old, new = term("finance", "PaymentCreated"), term("finance", "PaymentCreatedV2")
    event_type = iri(KNHK + "eventType")
    return DeltaSigma.of(
        [(old, event_type, literal("payment.created.legacy")), (new, TYPE, iri(RDFS_CLASS)),
         (new, TYPE, iri(OWL_CLASS)), (new, iri(RDFS + "subClassOf"), iri(KNHK + "Event")),
         (new, event_type, literal("payment.created"))],
        [(old, event_type, literal("payment.created"))])


def test_an_immutable_guard_cannot_be_disarmed_without_touching_it() -> None:
    report = validate(pipeline_input("finance", move_payment_created(), approvers=APPROVERS))
    assert report.outcome == "rejected"
    assert report.failed_stage == "guards"
    assert "immutable guard FIN-LIMIT-001 would no longer cover payment.created" in (report.reason or "")


@pytest.mark.parametrize(("prop", "new"), [("hotPath", literal("false", BOOL)), ("criticality", literal("low")),
                                           ("onField", literal("amount")), ("immutable", literal("false", BOOL))])
def test_an_immutable_guard_cannot_be_changed_by_any_delta(prop: str, new: str) -> None:
    report = validate(pipeline_input("finance", _replace("finance", "FIN-LIMIT-001", prop, new),
                                     approvers=APPROVERS))
    assert report.outcome == "rejected"
    assert report.failed_stage == "guards"
    assert "FIN-LIMIT-001" in (report.reason or "")


# -- end to end, on both backends ------------------------------------------------------------------------
def test_the_loop_never_promotes_a_guard_relaxation_without_people(loop_runtime: Runtime,
                                                                   clock: ManualClock) -> None:
    rt = loop_runtime
    delta, _ = iso_changes()["hot_path_false"]
    proposal, _ = rt.proposals.create("manufacturing", plan(delta.additions, delta.removals, "switch off ISO"),
                                      pattern=None, author="mallory@example.org", proposer="human")
    execution = rt.proposals.execute(proposal.id)
    assert execution.outcome == "held"
    assert rt.registry.current("manufacturing").id == proposal.base_id  # type: ignore[union-attr]
    validated = rt.ledger.entry_by_id(execution.receipts[0])
    assert validated.fields["data"]["pending_approvals"] == ["GUARD-RELAXATION"]
    assert "ISO9001-QUALITY-001" in validated.fields["reason"]
    for who in ("quinn@example.org", "rosa@example.org"):
        result = rt.proposals.decide(proposal.id, identity=who, roles=["validator"], sector_attr="manufacturing")
    # a relaxation is a major change: after its approvers, its review window (24 h) for objections
    assert result.outcome == "held"
    assert rt.proposals.get(proposal.id)[1].change_class == "major"
    clock.advance(24 * 3600 + 1)
    (released,) = rt.proposals.release_due("manufacturing")
    assert released.outcome == "promoted"
    # the people relaxed the Σ guard; the ISO 9001 doctrine still holds sector-wide on ingest
    clock.set(clock.now_us() + 1_000_000)
    stored = rt.ingestor.ingest(observation("manufacturing", "quality.inspection",
                                            {"batch_id": "B", "defect_rate": 0.5, "inspected_units": 3},
                                            clock.now_us()))
    assert [v.guard_id for v in stored.violations] == [ISO]


def test_moving_the_guarded_type_is_rejected_even_with_two_approvers(loop_runtime: Runtime) -> None:
    rt = loop_runtime
    delta = move_payment_created()
    proposal, _ = rt.proposals.create("finance", plan(delta.additions, delta.removals, "new payment class"),
                                      pattern=None, author="mallory@example.org", proposer="human")
    report, entry = rt.proposals.validate(proposal.id)
    assert (report.outcome, report.failed_stage) == ("rejected", "guards")
    assert entry.fields["outcome"] == "rejected"
    assert entry.ts_us >= MONDAY_10
