"""Approvals of held proposals (SPEC §7) on both backends, through ProposalService.decide.

Who may approve, what counts toward a quorum, what is refused at approval time (with an ``approval.refused``
receipt and a denied audit entry) and what happens when the quorum is reached (the proposal is validated
again and promoted).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from loop_support import MONDAY_10, new_event_type, plan

from knhk.app.runtime import Runtime, doctrines_for
from knhk.errors import ConflictError, ForbiddenError, KnhkError
from knhk.governance.approvals import DEFAULT_EXPIRY_S, ApprovalExpiredError, ApprovalRecord, check_approval
from knhk.loop.proposals import ProposalService
from knhk.ops.clock import ManualClock
from knhk.proposals.model import Proposal
from knhk.validation.doctrines import Approver, Doctrine

AUTHOR = "bob@bank.example"
Act = tuple[str, str | None, tuple[str, ...]]  # (identity, sector attribute, roles)


def held(rt: Runtime, sector: str, service: ProposalService | None = None, local: str = "RefundIssued") -> Proposal:
    svc = service or rt.proposals
    change = plan(new_event_type(sector, local, "refund.issued", [("amount", "decimal", True)]))
    proposal, _ = svc.create(sector, change, pattern=None, author=AUTHOR)
    execution = svc.execute(proposal.id)
    assert execution.outcome == "held", execution.report and execution.report.reason
    return proposal


def act(svc: ProposalService, pid: str, steps: Sequence[Act]) -> list[str]:
    """Apply approvals in order; the result of each ('promoted', 'held', or the refusal's error class)."""
    out = []
    for identity, sector, roles in steps:
        try:
            out.append(svc.decide(pid, identity=identity, roles=list(roles), sector_attr=sector).outcome)
        except KnhkError as exc:
            out.append(type(exc).__name__)
    return out


ALICE: Act = ("alice@bank.example", "finance", ("validator",))
DAN: Act = ("dan@bank.example", "finance", ("validator",))
CAROL: Act = ("carol@bank.example", "compliance", ("validator",))
ERIN: Act = ("erin@bank.example", "compliance", ("validator",))
BOB: Act = (AUTHOR, "compliance", ("validator",))


@pytest.mark.parametrize(("steps", "results", "final"), [
    ([ALICE, CAROL], ["held", "promoted"], "promoted"),
    ([CAROL, ALICE], ["held", "promoted"], "promoted"),
    ([CAROL, ERIN], ["held", "promoted"], "promoted"),
    ([ALICE, DAN], ["held", "held"], "held"),                              # 2 finance approvers: still held
    ([ALICE, ALICE], ["held", "ConflictError"], "held"),                   # the same person twice
    ([CAROL, CAROL, ALICE], ["held", "ConflictError", "promoted"], "promoted"),
    ([BOB], ["ForbiddenError"], "held"),                                   # the author can not approve
    ([BOB, ALICE, CAROL], ["ForbiddenError", "held", "promoted"], "promoted"),
])
def test_fin_approval_001_quorum(loop_runtime: Runtime, steps: list[Act], results: list[str], final: str) -> None:
    proposal = held(loop_runtime, "finance")
    assert act(loop_runtime.proposals, proposal.id, steps) == results
    _, status = loop_runtime.proposals.get(proposal.id)
    assert status.status == final
    current = loop_runtime.registry.current("finance")
    assert current is not None
    assert (current.id == proposal.candidate_id) is (final == "promoted")
    recorded = loop_runtime.proposals.approvals(proposal.id)
    assert len(recorded) == results.count("held") + results.count("promoted")
    assert all(a["subject"].startswith("sub_") for a in recorded)  # pseudonyms, never identities
    assert not any("@" in a["subject"] for a in recorded)


def test_refusal_is_receipted_audited_and_not_counted(loop_runtime: Runtime) -> None:
    proposal = held(loop_runtime, "healthcare", local="PatientDischarged")
    with pytest.raises(ForbiddenError, match="HIPAA-SOD-001"):
        loop_runtime.proposals.decide(proposal.id, identity="dave@hospital.example", roles=["doctor", "billing"],
                                      sector_attr="healthcare")
    (refusal,) = loop_runtime.ledger.entries("receipts", kind="approval.refused")
    assert refusal.fields["outcome"] == "refused"
    assert refusal.fields["subject"] == proposal.id
    assert refusal.fields["data"]["roles"] == ["billing", "doctor"]
    assert "HIPAA-SOD-001" in refusal.fields["reason"]
    denied = [e for e in loop_runtime.audit.events(limit=1000) if e.outcome == "denied"]
    assert len(denied) == 1
    assert denied[0].action == "proposal.approved"
    assert denied[0].resource == f"proposal/{proposal.id}"
    assert denied[0].metadata["refusal_receipt"] == refusal.id
    assert "dave" not in denied[0].actor
    assert loop_runtime.proposals.approvals(proposal.id) == []
    assert loop_runtime.proposals.get(proposal.id)[1].status == "held"
    # a doctor alone is fine: the quorum of one is reached and the change promoted
    result = loop_runtime.proposals.decide(proposal.id, identity="erin@hospital.example", roles=["doctor"],
                                           sector_attr="healthcare")
    assert result.outcome == "promoted"
    assert result.promoted_snapshot == proposal.candidate_id


def test_two_people_may_hold_incompatible_roles_between_them(loop_runtime: Runtime, clock: ManualClock) -> None:
    two = [Doctrine.from_json({"id": "HC-TWO", "sector": "healthcare", "type": "approval_chain",
                               "level": "mandatory", "params": {"required": 2}}),
           *[d for d in doctrines_for("healthcare") if d.type != "approval_chain"]]
    rt = loop_runtime
    svc = ProposalService(rt.db, rt.ledger, rt.audit, rt.registry, rt.reader, lambda _s: two, clock)
    proposal = held(rt, "healthcare", svc, local="PatientDischarged")
    steps: list[Act] = [("dave@hospital.example", "healthcare", ("doctor",)),
                        ("frank@hospital.example", "healthcare", ("billing",))]
    assert act(svc, proposal.id, steps) == ["held", "promoted"]


@pytest.mark.parametrize(("after_s", "accepted"), [
    (DEFAULT_EXPIRY_S - 1, True),
    (DEFAULT_EXPIRY_S, True),           # exactly 7 days after it was held: still in time
    (DEFAULT_EXPIRY_S + 1, False),
    (DEFAULT_EXPIRY_S + 86_400, False),
])
def test_approval_after_expiry_is_refused(loop_runtime: Runtime, clock: ManualClock, after_s: int,
                                          accepted: bool) -> None:
    proposal = held(loop_runtime, "finance")
    clock.advance(after_s)
    steps = [ALICE]
    assert act(loop_runtime.proposals, proposal.id, steps) == ["held" if accepted else "ApprovalExpiredError"]
    if not accepted:
        (refusal,) = loop_runtime.ledger.entries("receipts", kind="approval.refused")
        assert "expired" in refusal.fields["reason"]
        # the next cycle's housekeeping marks it expired, with a receipt
        (expired,) = loop_runtime.proposals.expire_overdue("finance")
        assert expired.outcome == "expired"
        assert loop_runtime.proposals.get(proposal.id)[1].status == "expired"


def test_a_rejection_by_an_approver_rejects(loop_runtime: Runtime) -> None:
    proposal = held(loop_runtime, "finance")
    result = loop_runtime.proposals.reject_by(proposal.id, identity="carol@bank.example", roles=["validator"],
                                              sector_attr="compliance", comment="not now")
    assert result.outcome == "rejected"
    assert loop_runtime.proposals.get(proposal.id)[1].status == "rejected"
    with pytest.raises(ConflictError, match="not held"):
        loop_runtime.proposals.decide(proposal.id, identity="alice@bank.example", roles=["validator"],
                                      sector_attr="finance")


def test_approval_receipt_binds_subject_role_sector_and_time(loop_runtime: Runtime, clock: ManualClock) -> None:
    proposal = held(loop_runtime, "finance")
    clock.advance(30)
    loop_runtime.proposals.decide(proposal.id, identity="alice@bank.example", roles=["validator"],
                                  sector_attr="finance", comment="looks right")
    (receipt,) = loop_runtime.ledger.entries("receipts", kind="approval.recorded")
    data = receipt.fields["data"]
    assert data["approver"].startswith("sub_")
    assert (data["roles"], data["sector_attr"], data["decision"], data["at_us"]) == (
        ["validator"], "finance", "approve", clock.now_us())
    assert receipt.fields["reason"] == "looks right"


# -- the rule itself, without storage -------------------------------------------------------------------
HC = doctrines_for("healthcare")


def rec(subject: str) -> ApprovalRecord:
    return ApprovalRecord("p", Approver(subject), "approve", MONDAY_10)


@pytest.mark.parametrize(("approver", "existing", "now", "error"), [
    (Approver("sub_a", frozenset({"doctor"})), [], MONDAY_10, None),
    (Approver("sub_author", frozenset({"doctor"})), [], MONDAY_10, ForbiddenError),
    (Approver("sub_a", frozenset({"doctor", "billing"})), [], MONDAY_10, ForbiddenError),
    (Approver("sub_a", frozenset({"patient", "administrator"})), [], MONDAY_10, ForbiddenError),
    (Approver("sub_a", frozenset({"doctor"})), [rec("sub_a")], MONDAY_10, ConflictError),
    (Approver("sub_a", frozenset({"doctor"})), [rec("sub_b")], MONDAY_10, None),
    (Approver("sub_a"), [], MONDAY_10 + DEFAULT_EXPIRY_S * 1_000_000, None),
    (Approver("sub_a"), [], MONDAY_10 + DEFAULT_EXPIRY_S * 1_000_000 + 1, ApprovalExpiredError),
])
def test_check_approval_table(approver: Approver, existing: list[ApprovalRecord], now: int,
                              error: type[Exception] | None) -> None:
    def call() -> None:
        check_approval(author="sub_author", approver=approver, decision="approve", doctrines=HC, existing=existing,
                       held_at_us=MONDAY_10, now_us=now)

    if error is None:
        call()
    else:
        with pytest.raises(error):
            call()


def test_sod_refusal_follows_the_rules_effective_dates() -> None:
    sod = Doctrine.from_json({"id": "SOD", "sector": "healthcare", "type": "segregation_of_duties",
                              "level": "mandatory", "params": {"incompatible": [["doctor", "billing"]]},
                              "effective_from": "2027-01-01", "expires": None})
    both = Approver("sub_a", frozenset({"doctor", "billing"}))
    check_approval(author="x", approver=both, decision="approve", doctrines=[sod], existing=[],
                   held_at_us=MONDAY_10, now_us=MONDAY_10)  # not yet in effect: allowed
    later = MONDAY_10 + 40 * 86_400_000_000
    with pytest.raises(ForbiddenError):
        check_approval(author="x", approver=both, decision="approve", doctrines=[sod], existing=[],
                       held_at_us=later, now_us=later)
    advisory = Doctrine.from_json({"id": "SOD2", "sector": "healthcare", "type": "segregation_of_duties",
                                   "level": "advisory", "params": {"incompatible": [["doctor", "billing"]]}})
    check_approval(author="x", approver=both, decision="approve", doctrines=[advisory], existing=[],
                   held_at_us=MONDAY_10, now_us=MONDAY_10)


def test_peoples_decisions_teach_the_threshold_learner(loop_runtime: Runtime) -> None:
    rt = loop_runtime
    change = plan(new_event_type("finance", "RefundIssued", "refund.issued", [("amount", "decimal", True)]))
    proposal, _ = rt.proposals.create("finance", change, pattern="schema_drift:refund.issued", author=AUTHOR)
    assert rt.proposals.execute(proposal.id).outcome == "held"
    before = rt.thresholds.state("finance", "schema_drift")
    act(rt.proposals, proposal.id, [("fay@bank.example", "finance", ("validator",)),
                                    ("cal@bank.example", "compliance", ("validator",))])
    after = rt.thresholds.state("finance", "schema_drift")
    assert (after.accepted, after.rejected) == (before.accepted + 1, before.rejected)
    other = plan(new_event_type("finance", "ChargebackOpened", "chargeback.opened", [("amount", "decimal", True)]))
    rejected, _ = rt.proposals.create("finance", other, pattern="schema_drift:chargeback.opened", author=AUTHOR)
    assert rt.proposals.execute(rejected.id).outcome == "held"
    rt.proposals.decide(rejected.id, identity="fay@bank.example", roles=["validator"], sector_attr="finance",
                        decision="reject")
    assert rt.thresholds.state("finance", "schema_drift").rejected == before.rejected + 1
