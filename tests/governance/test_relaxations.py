"""Guard relaxations (SPEC §7) on both backends, through the application with a manual clock: quorum and
minimum review by criticality, distinct non-author approvers, the single-use window the hot path reads (the
guard is off only in that sector and only during the window, and raises again after it with nobody acting),
revocation, rejection, expiry, immutable guards refused, every transition a receipt."""

from __future__ import annotations

from typing import Any

import pytest

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.app.runtime import Runtime
from knhk.errors import ConflictError, ForbiddenError, ImmutableError, InvalidInputError, NotFoundError
from knhk.governance.relaxations import REVIEW
from knhk.ledger import receipts
from knhk.ops.clock import ManualClock

H = 3600
ALICE = local_principal("alice@plant.example", ["operator"])
VALIDATORS = [local_principal(f"v{i}@plant.example", ["validator"], "quality") for i in range(4)]


@pytest.fixture
def app(loop_runtime: Runtime) -> Application:
    return Application(loop_runtime, LocalAccess())


def inspection(defect_rate: Any, n: int) -> dict[str, Any]:
    return {"event_type": "quality.inspection", "sector": "manufacturing", "id": f"qi-{n}",
            "value": {"batch_id": f"B{n}", "defect_rate": defect_rate, "inspected_units": 1000}}


def violated(app: Application, raw: dict[str, Any]) -> list[str]:
    """The guard ids the hot path raised for one observation."""
    result = app.ingest(ALICE, raw)
    return [v.guard_id for v in result.violations]


def kinds(app: Application, relaxation_id: str) -> list[str]:
    entries = app.runtime.ledger.entries(receipts.RECEIPTS, limit=10_000)
    return [e.kind for e in entries if e.subject == relaxation_id]


def test_review_rules_are_the_spec_table() -> None:
    assert {k: (r.quorum, r.min_review_s) for k, r in REVIEW.items()} == {
        "critical": (3, 24 * H), "high": (2, 12 * H), "medium": (1, H), "low": (1, 0)}


def test_critical_guard_off_only_in_its_window_then_restored(app: Application, clock: ManualClock) -> None:
    assert violated(app, inspection(0.5, 1)) == ["ISO9001-QUALITY-001"]
    r = app.relax_guard(ALICE, "manufacturing", "ISO9001-QUALITY-001", 2 * H, "recalibrating the line sensors")
    assert (r.state, r.row.quorum, r.row.min_review_s, r.row.criticality) == ("pending", 3, 24 * H, "critical")

    with pytest.raises(ForbiddenError, match="author"):  # the author never approves their own request
        app.decide_relaxation(local_principal("alice@plant.example", ["validator"]), r.id)
    app.decide_relaxation(VALIDATORS[0], r.id)
    with pytest.raises(ConflictError, match="already decided"):  # the same person twice is not a quorum
        app.decide_relaxation(VALIDATORS[0], r.id)
    assert app.decide_relaxation(VALIDATORS[1], r.id).state == "pending"
    assert violated(app, inspection(0.5, 2)) == ["ISO9001-QUALITY-001"]

    clock.advance(H)
    granted = app.decide_relaxation(VALIDATORS[2], r.id)
    assert granted.state == "scheduled"  # quorum reached, the 24 h minimum review is not over yet
    assert granted.row.starts_us == r.row.requested_us + 24 * H * 1_000_000
    assert granted.row.ends_us == granted.row.starts_us + 2 * H * 1_000_000
    assert violated(app, inspection(0.5, 3)) == ["ISO9001-QUALITY-001"]

    clock.advance(23 * H)  # the window opens
    assert app.relaxation(ALICE, r.id).state == "active"
    assert violated(app, inspection(0.5, 4)) == []
    assert violated(app, inspection("not a number", 5)) == []

    clock.advance(2 * H)  # the window is over: the guard holds again, nobody acted
    assert violated(app, inspection(0.5, 6)) == ["ISO9001-QUALITY-001"]
    [ended] = app.relaxations(ALICE, sector="manufacturing")  # the sweep receipts what time has done
    assert ended.state == "ended"
    assert kinds(app, r.id) == ["relaxation.requested", "relaxation.refused", "relaxation.decided",
                                "relaxation.refused", "relaxation.decided", "relaxation.decided",
                                "relaxation.granted", "relaxation.ended"]
    with pytest.raises(ConflictError):  # single use: an ended window can be neither revoked nor approved
        app.revoke_relaxation(ALICE, r.id)
    with pytest.raises(ConflictError):
        app.decide_relaxation(VALIDATORS[3], r.id)
    assert app.runtime.relaxations.sweep() == []  # idempotent


def test_relaxation_is_per_sector(app: Application, clock: ManualClock) -> None:
    r = app.relax_guard(ALICE, "logistics", "LOG-WEIGHT-001", H, "oversize convoy")
    app.decide_relaxation(VALIDATORS[0], r.id)
    clock.advance(H)
    assert app.relaxation(ALICE, r.id).state == "active"
    assert violated(app, inspection(0.5, 7)) == ["ISO9001-QUALITY-001"]  # another sector's guards hold
    heavy = {"event_type": "shipment.dispatched", "sector": "logistics", "id": "s-1",
             "value": {"shipment_id": "S1", "weight_kg": 50_000, "origin": "A", "destination": "B"}}
    assert app.ingest(ALICE, heavy).violations == ()


def test_revoke_restores_the_guard_at_once(app: Application, clock: ManualClock) -> None:
    r = app.relax_guard(ALICE, "manufacturing", "ISO9001-QUALITY-001", 4 * H, "line test")
    for v in VALIDATORS[:3]:
        app.decide_relaxation(v, r.id)
    clock.advance(24 * H)
    assert violated(app, inspection(0.5, 10)) == []
    revoked = app.revoke_relaxation(VALIDATORS[3], r.id, "test finished early")
    assert revoked.state == "revoked"
    assert violated(app, inspection(0.5, 11)) == ["ISO9001-QUALITY-001"]
    assert kinds(app, r.id)[-1] == "relaxation.revoked"
    with pytest.raises(ConflictError):
        app.revoke_relaxation(ALICE, r.id)
    # a revoked request is over; a new window needs a new request and its own quorum
    again = app.relax_guard(ALICE, "manufacturing", "ISO9001-QUALITY-001", H, "second try")
    assert again.state == "pending"


def test_immutable_guard_refused_outright(app: Application) -> None:
    before = app.runtime.ledger.tree_size(receipts.RECEIPTS)
    with pytest.raises(ImmutableError, match="immutable"):
        app.relax_guard(ALICE, "finance", "FIN-LIMIT-001", H, "quarter end")
    entries = app.runtime.ledger.entries(receipts.RECEIPTS, after_seq=before - 1, limit=10_000)
    assert [(e.kind, e.outcome) for e in entries] == [("relaxation.refused", "refused")]
    assert app.relaxations(ALICE) == []


def test_requests_refused_when_malformed_or_duplicate(app: Application) -> None:
    with pytest.raises(NotFoundError, match="ISO9001-QUALITY-001"):
        app.relax_guard(ALICE, "manufacturing", "NOPE", H, "x")
    with pytest.raises(InvalidInputError, match="installed"):
        app.relax_guard(ALICE, "nope", "NOPE", H, "x")
    with pytest.raises(InvalidInputError, match="1 s to"):
        app.relax_guard(ALICE, "manufacturing", "ISO9001-QUALITY-001", 31 * 24 * H, "too long")
    with pytest.raises(InvalidInputError, match="reason"):
        app.relax_guard(ALICE, "manufacturing", "ISO9001-QUALITY-001", H, " ")
    app.relax_guard(ALICE, "manufacturing", "ISO9001-QUALITY-001", H, "first")
    with pytest.raises(ConflictError, match="open relaxation"):
        app.relax_guard(ALICE, "manufacturing", "ISO9001-QUALITY-001", H, "second")


def test_a_rejection_ends_the_request(app: Application, clock: ManualClock) -> None:
    r = app.relax_guard(ALICE, "healthcare", "HC-LAB-001", H, "new analyser")
    assert (r.row.quorum, r.row.min_review_s) == (2, 12 * H)
    app.decide_relaxation(VALIDATORS[0], r.id)
    assert app.decide_relaxation(VALIDATORS[1], r.id, "reject", "no validation data").state == "rejected"
    clock.advance(13 * H)
    with pytest.raises(ConflictError, match="rejected"):
        app.decide_relaxation(VALIDATORS[2], r.id)
    assert app.runtime.relaxations.relaxed("healthcare", clock.now_us()) == frozenset()


def test_segregation_of_duties_applies_to_approvers(app: Application) -> None:
    r = app.relax_guard(ALICE, "healthcare", "HC-LAB-001", H, "new analyser")
    both = local_principal("eve@clinic.example", ["doctor", "billing"])
    with pytest.raises(ForbiddenError, match="HIPAA-SOD-001"):
        app.decide_relaxation(both, r.id)
    assert kinds(app, r.id) == ["relaxation.requested", "relaxation.refused"]


def test_unanswered_request_expires_after_seven_days(app: Application, clock: ManualClock) -> None:
    r = app.relax_guard(ALICE, "logistics", "LOG-WEIGHT-001", H, "oversize convoy")
    clock.advance(7 * 24 * H + 1)
    with pytest.raises(ConflictError, match="expired"):
        app.decide_relaxation(VALIDATORS[0], r.id)
    [expired] = app.relaxations(ALICE, status="expired")
    assert expired.id == r.id
    assert kinds(app, r.id)[-1] == "relaxation.expired"
