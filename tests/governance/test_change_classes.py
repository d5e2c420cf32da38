"""Change classes (SPEC §7): the class decided from ΔΣ (pure), and each class's path on both backends —
standard promoted by the loop without people, major held for two approvers and its review window (an objection
rejects it), emergency promoted at once by an operator and reviewed after, overdue reviews alerted. The class
and its reason are in every receipt of the proposal."""

from __future__ import annotations

import pytest
from loop_support import SUBCLASS, TYPE, guard, new_event_type, pack_root, plan, term

from knhk.app.runtime import Runtime
from knhk.errors import ConfigurationError, ConflictError, ForbiddenError, InvalidInputError, RejectedError
from knhk.ontology.extract import extract_schema
from knhk.ontology.namespaces import KNHK, RDFS, SH, XSD, iri, literal
from knhk.ops.clock import ManualClock
from knhk.proposals.delta import DeltaSigma, Triple
from knhk.validation.classes import ClassRules, classify
from knhk.validation.guard_changes import guard_changes

DAY_S = 86_400
COMMENT = iri(RDFS + "comment")


def klass(sector: str, additions: list[Triple], removals: list[Triple] = (),  # type: ignore[assignment]
          rules: ClassRules | None = None, requested: str | None = None) -> tuple[str, str]:
    base = pack_root(sector)
    delta = DeltaSigma.of(additions, removals)
    after = frozenset(delta.apply(base.triples))
    before_schema = extract_schema(sector, base.id, base.triples)
    after_schema = extract_schema(sector, "c" * 64, after)
    found = classify(delta, base_triples=base.triples, base_schema=before_schema,
                     changes=guard_changes(before_schema, after_schema), rules=rules or ClassRules(),
                     requested=requested)
    return found.name, found.reason


def triple_of(sector: str, subject_local: str, predicate: str) -> Triple:
    subject = term(sector, subject_local)
    return next(t for t in pack_root(sector).triples if t[0] == subject and t[1] == predicate)


LIMIT = iri(KNHK + "limit")
HOT = iri(KNHK + "hotPath")
PROTECTED = iri(KNHK + "protected")


def tighter_quality_limit() -> tuple[list[Triple], list[Triple]]:
    old = triple_of("manufacturing", "ISO9001-QUALITY-001", LIMIT)
    return [(old[0], LIMIT, literal("0.0005", XSD + "decimal"))], [old]


@pytest.mark.parametrize(("sector", "change", "expected", "why"), [
    ("finance", lambda: (new_event_type("finance", "RefundIssued", "refund.issued", [("amount", "decimal", True)]), []),
     "standard", "new nodes"),
    ("finance", lambda: ([(term("finance", "Account"), COMMENT, literal("an account"))], []), "standard",
     "annotations"),
    ("manufacturing", lambda: (guard("manufacturing", "MFG-RATE-9", "MachineReading", ticks=1), []), "normal",
     "adds a guard"),
    ("manufacturing", lambda: ([(term("manufacturing", "MachineReading"), SUBCLASS, iri(KNHK + "Event"))], []),
     "normal", "changes the existing MachineReading"),
    ("manufacturing", tighter_quality_limit, "major", "changes guards: ISO9001-QUALITY-001 limit"),
    ("manufacturing", lambda: ([], [triple_of("manufacturing", "ISO9001-QUALITY-001", HOT)]), "major",
     "changes guards"),
    ("finance", lambda: ([], [triple_of("finance", "approval_required", PROTECTED)]), "major",
     "removes a triple of the protected approval_required"),
    ("finance", lambda: ([(term("finance", "Account"), iri(SH + "closed"), literal("true", XSD + "boolean"))], []),
     "major", "constrains the protected Account"),
])
def test_the_class_is_decided_from_the_delta(sector: str, change: object, expected: str, why: str) -> None:
    additions, removals = change()  # type: ignore[operator]
    name, reason = klass(sector, additions, removals)
    assert name == expected, reason
    assert why in reason
    assert reason.startswith(f"{expected}:")


def test_size_rules_and_requests() -> None:
    event = new_event_type("logistics", "ParcelWeighed", "parcel.weighed", [(f"f{i}", "string", False)
                                                                           for i in range(3)])
    assert klass("logistics", event)[0] == "standard"
    assert klass("logistics", event, rules=ClassRules(standard_triples=10))[0] == "normal"
    name, reason = klass("logistics", event, rules=ClassRules(standard_triples=10, major_triples=20))
    assert name == "major"
    assert "more than 20" in reason
    assert klass("logistics", event, rules=ClassRules(standard=False))[0] == "normal"
    raised = klass("logistics", event, requested="major")
    assert raised[0] == "major"
    assert "raised by its proposer" in raised[1]
    kept = klass("manufacturing", *tighter_quality_limit(), requested="standard")
    assert kept[0] == "major"
    assert "never lowered" in kept[1]
    with pytest.raises(InvalidInputError, match="emergency"):
        klass("logistics", event, requested="emergency")


@pytest.mark.parametrize("raw", [{"bogus": 1}, {"standard": "yes"}, {"major_approvers": 1},
                                 {"review_window_s": -1}, {"standard_triples": 50, "major_triples": 10},
                                 {"major_triples": True}])
def test_bad_class_rules_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        ClassRules.from_json(raw, "test")


# -- the paths, on both backends ------------------------------------------------------------------------------
AUTHOR = "bob@plant.example"


def class_of_receipts(rt: Runtime, pid: str) -> set[tuple[str, str | None]]:
    """(kind, change_class) of every receipt that names the proposal."""
    out = set()
    for e in rt.ledger.entries("receipts", limit=10_000):
        data = e.data or {}
        if e.subject == pid or data.get("proposal_id") == pid:
            out.add((e.kind, data.get("change_class")))
    return out


def test_standard_is_promoted_by_the_loop_without_people(loop_runtime: Runtime) -> None:
    rt = loop_runtime
    change = plan(new_event_type("manufacturing", "ToolChanged", "tool.changed", [("tool_id", "string", False)]))
    proposal, _ = rt.proposals.create("manufacturing", change, pattern=None, author=AUTHOR)
    assert rt.proposals.get(proposal.id)[1].change_class == "standard"
    # a person's proposal is picked up by the loop's next cycle and promoted: nobody approves it
    rt.coordinator.run_cycle("manufacturing")
    _, status = rt.proposals.get(proposal.id)
    assert status.status == "promoted"
    assert rt.proposals.approvals(proposal.id) == []
    kinds = class_of_receipts(rt, proposal.id)
    assert {k for k, _ in kinds} >= {"proposal.created", "proposal.validated"}
    assert {c for _, c in kinds} == {"standard"}
    promoted = rt.ledger.entries("receipts", kind="snapshot.promoted")[-1]
    assert promoted.data["change_class"] == "standard"


def test_major_needs_two_approvers_and_its_review_window(loop_runtime: Runtime, clock: ManualClock) -> None:
    rt = loop_runtime
    proposal, _ = rt.proposals.create("manufacturing", plan(*tighter_quality_limit()), pattern=None, author=AUTHOR)
    _, status = rt.proposals.get(proposal.id)
    assert status.change_class == "major"
    first = rt.proposals.execute(proposal.id)
    assert first.outcome == "held"
    assert first.report is not None
    assert "CLASS-MAJOR: 0/2" in (first.report.reason or "")
    steps = [("ann@plant.example", ["validator"]), ("ben@plant.example", ["validator"])]
    outcomes = [rt.proposals.decide(proposal.id, identity=who, roles=roles, sector_attr="manufacturing").outcome
                for who, roles in steps]
    assert outcomes == ["held", "held"]  # the quorum is there, the window is not over
    assert "review window is open until" in (rt.proposals.get(proposal.id)[1].reason or "")
    clock.advance(DAY_S - 60)
    assert rt.proposals.release_due("manufacturing") == []
    clock.advance(120)
    (released,) = rt.proposals.release_due("manufacturing")
    assert released.outcome == "promoted"
    assert {c for _, c in class_of_receipts(rt, proposal.id)} == {"major"}


def test_an_objection_in_the_window_rejects_a_major_change(loop_runtime: Runtime, clock: ManualClock) -> None:
    rt = loop_runtime
    proposal, _ = rt.proposals.create("manufacturing", plan(*tighter_quality_limit()), pattern=None, author=AUTHOR)
    rt.proposals.execute(proposal.id)
    for who in ("ann@plant.example", "ben@plant.example"):
        rt.proposals.decide(proposal.id, identity=who, roles=["validator"], sector_attr="manufacturing")
    clock.advance(3600)
    objected = rt.proposals.decide(proposal.id, identity="cem@plant.example", roles=["validator"],
                                   sector_attr="manufacturing", decision="reject", comment="objection: too tight")
    assert objected.outcome == "rejected"
    clock.advance(DAY_S)
    assert rt.proposals.release_due("manufacturing") == []
    assert rt.proposals.get(proposal.id)[1].status == "rejected"
    (objection,) = [e for e in rt.ledger.entries("receipts", kind="approval.recorded") if e.outcome == "reject"]
    assert objection.data["change_class"] == "major"


def test_emergency_promotes_at_once_and_owes_a_review(loop_runtime: Runtime, clock: ManualClock) -> None:
    rt = loop_runtime
    change = plan(new_event_type("healthcare", "BedAssigned", "bed.assigned", [("bed", "string", False)]))
    proposal, _ = rt.proposals.create("healthcare", change, pattern=None, author="hal@hospital.example")
    assert rt.proposals.execute(proposal.id).outcome == "held"  # HC-APPROVAL-001 waits for a doctor
    with pytest.raises(InvalidInputError, match="justification"):
        rt.proposals.emergency(proposal.id, identity="olga@hospital.example", roles=["operator"],
                               sector_attr="healthcare", justification=" ")
    with pytest.raises(ForbiddenError, match="author"):
        rt.proposals.emergency(proposal.id, identity="hal@hospital.example", roles=["operator"],
                               sector_attr="healthcare", justification="ward opening tonight")
    result = rt.proposals.emergency(proposal.id, identity="olga@hospital.example", roles=["operator"],
                                    sector_attr="healthcare", justification="ward opening tonight")
    assert result.outcome == "promoted"
    _, status = rt.proposals.get(proposal.id)
    assert status.change_class == "emergency"
    assert "ward opening tonight" in (status.class_reason or "")
    promoted = rt.ledger.entries("receipts", kind="snapshot.promoted")[-1]
    assert promoted.data["change_class"] == "emergency"
    assert rt.proposals.find(overdue=True) == []
    clock.advance(DAY_S + 1)
    (alert,) = rt.proposals.alert_overdue("healthcare")
    assert rt.proposals.alert_overdue("healthcare") == []  # once
    assert [p.id for p, _ in rt.proposals.find(overdue=True)] == [proposal.id]
    by_id = {e.id: e for e in rt.ledger.entries("receipts", kind="alert.raised")}
    assert by_id[alert].data["source"] == "review"
    with pytest.raises(ForbiddenError, match="distinct validator"):
        rt.proposals.review(proposal.id, identity="olga@hospital.example", verdict="accepted")
    reviewed = rt.proposals.review(proposal.id, identity="vera@hospital.example", verdict="accepted",
                                   comment="fine")
    assert reviewed.outcome == "accepted"
    assert reviewed.data["change_class"] == "emergency"
    assert rt.proposals.find(overdue=True) == []
    with pytest.raises(ConflictError):
        rt.proposals.review(proposal.id, identity="vic@hospital.example", verdict="rejected")


def test_emergency_still_obeys_mandatory_doctrines_and_never_takes_a_major_change(loop_runtime: Runtime) -> None:
    rt = loop_runtime
    change = plan(new_event_type("finance", "RefundIssued", "refund.issued", [("amount", "decimal", True)]))
    fin, _ = rt.proposals.create("finance", change, pattern=None, author="bob@bank.example")
    with pytest.raises(RejectedError, match="FIN-APPROVAL-001"):
        rt.proposals.emergency(fin.id, identity="olga@bank.example", roles=["operator"], sector_attr="finance",
                               justification="regulator deadline")
    assert rt.proposals.get(fin.id)[1].status == "created"
    assert rt.proposals.get(fin.id)[1].change_class == "standard"
    major, _ = rt.proposals.create("manufacturing", plan(*tighter_quality_limit()), pattern=None, author=AUTHOR)
    with pytest.raises(RejectedError, match="major"):
        rt.proposals.emergency(major.id, identity="olga@plant.example", roles=["operator"],
                               sector_attr="manufacturing", justification="now")
    assert TYPE  # the loop support's vocabulary is the one the packs use
