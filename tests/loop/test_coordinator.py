"""One MAPE-K cycle (SPEC §1) on both backends: outcomes, the receipts it writes and their order, the cycle
record, idempotent re-runs and learning."""

from __future__ import annotations

import itertools
import re

import pytest
from loop_support import MONDAY_10, ingest, kinds, observation

from knhk.app.runtime import Runtime
from knhk.errors import InvalidInputError
from knhk.loop.coordinator import CycleRecord
from knhk.ops.clock import ManualClock

ORDER = re.compile(r"^cycle\.started (pattern\.detected )*(proposal\.created )*"
                   r"((proposal\.created )?proposal\.validated (proposal\.held |snapshot\.promoted )?)*"
                   r"(proposal\.expired )*(alert\.raised )*cycle\.completed $")


def maintenance(n: int = 10, start: int = 0) -> list[dict[str, object]]:
    return [observation("manufacturing", "maintenance.completed",
                        {"machine_id": f"m{i % 3}", "technician": "t", "duration_min": 30 + i},
                        MONDAY_10 + (start + i) * 1_000_000, f"mc-{start + i}") for i in range(n)]


def burst(n: int = 150) -> list[dict[str, object]]:
    return [observation("manufacturing", "machine.reading", {"machine_id": "m1", "temperature": 20.5},
                        MONDAY_10 + 20_000_000 + i * 100_000, f"mr-{i}") for i in range(n)]


def run(rt: Runtime, clock: ManualClock, sector: str) -> CycleRecord:
    clock.advance(1)
    return rt.coordinator.run_cycle(sector)


def check_receipts(rt: Runtime, record: CycleRecord) -> list[str]:
    """The record's receipts are the cycle's stretch of the receipts log, contiguous and in SPEC order."""
    names = kinds(rt, record.receipt_ids)
    assert ORDER.match(" ".join(names) + " "), names
    entries = [rt.ledger.entry_by_id(i) for i in record.receipt_ids]
    seqs = [e.seq for e in entries]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing of the cycle is missing from the record
    for prev, cur in itertools.pairwise(entries):
        assert cur.parent == prev.id
    stored = rt.coordinator.cycle(record.id)
    assert stored is not None
    assert stored["receipt_ids"] == record.receipt_ids
    assert stored["counts"] == record.counts
    assert stored["outcome"] == record.outcome
    assert entries[-1].fields["data"]["counts"] == record.counts
    return names


def test_success_declares_the_new_type_and_promotes_it(loop_runtime: Runtime, clock: ManualClock) -> None:
    ingest(loop_runtime, clock, maintenance())
    root = loop_runtime.registry.current("manufacturing")
    record = run(loop_runtime, clock, "manufacturing")
    assert record.outcome == "success"
    names = check_receipts(loop_runtime, record)
    assert names == ["cycle.started", "pattern.detected", "proposal.created", "proposal.validated",
                     "snapshot.promoted", "cycle.completed"]
    c = record.counts
    assert (c["observations"], c["patterns"], c["proposals"], c["validations_passed"], c["promotions"]) == \
        (10, 1, 1, 1, 1)
    current = loop_runtime.registry.current("manufacturing")
    assert current is not None
    assert root is not None
    assert current.parent == root.id
    assert "maintenance.completed" in loop_runtime.registry.current_schema("manufacturing").event_types
    assert loop_runtime.thresholds.state("manufacturing", "schema_drift").accepted == 1


def test_two_proposals_of_one_cycle_are_both_promoted(loop_runtime: Runtime, clock: ManualClock) -> None:
    """The second is planned on the same base as the first; once the first is promoted it is rebased on the
    new snapshot and validated again instead of failing Q1."""
    ingest(loop_runtime, clock, maintenance() + burst())
    record = run(loop_runtime, clock, "manufacturing")
    assert record.outcome == "success"
    assert [p["outcome"] for p in record.proposals] == ["promoted", "promoted"]
    names = check_receipts(loop_runtime, record)
    assert names.count("proposal.created") == 3  # two planned, one rebased
    lineage = loop_runtime.registry.lineage(loop_runtime.registry.current("manufacturing").id)  # type: ignore[union-attr]
    assert [i.origin for i in lineage] == ["proposal", "proposal", "root"]
    statuses = sorted(s.status for _, s in loop_runtime.proposals.find(sector="manufacturing"))
    assert statuses == ["promoted", "promoted", "superseded"]
    assert loop_runtime.thresholds.state("manufacturing", "schema_drift").rejected == 0


def test_partial_when_a_proposal_waits_for_approval(loop_runtime: Runtime, clock: ManualClock) -> None:
    refunds = [observation("finance", "refund.issued", {"account_id": "a1", "transaction_amount": 10.5},
                           MONDAY_10 + i * 1_000_000, f"rf-{i}") for i in range(5)]
    ingest(loop_runtime, clock, refunds)
    record = run(loop_runtime, clock, "finance")
    assert record.outcome == "partial"
    assert check_receipts(loop_runtime, record)[-3:] == ["proposal.validated", "proposal.held", "cycle.completed"]
    assert (record.counts["held"], record.counts["promotions"], record.counts["validations_passed"]) == (1, 0, 1)


def test_partial_when_a_proposal_is_rejected_and_learning_counts_it(loop_runtime: Runtime,
                                                                     clock: ManualClock) -> None:
    # 90 conforming readings, then 5 carrying a new field "unit": declaring it required breaks 90 of 95 (Q2)
    readings = [observation("manufacturing", "machine.reading", {"machine_id": "m1", "temperature": 20},
                            MONDAY_10 + i * 100_000, f"ok-{i}") for i in range(90)]
    unit = {"machine_id": "m1", "temperature": 20, "unit": "C"}
    readings += [observation("manufacturing", "machine.reading", unit, MONDAY_10 + 11_000_000 + i, f"u-{i}")
                 for i in range(5)]
    ingest(loop_runtime, clock, readings)
    record = run(loop_runtime, clock, "manufacturing")
    assert record.outcome == "partial"
    (proposal,) = record.proposals
    assert (proposal["outcome"], proposal["failed_stage"]) == ("rejected", "invariants")
    assert "Q2" in proposal["reason"]
    assert (record.counts["rejected"], record.counts["validations_failed"]) == (1, 1)
    check_receipts(loop_runtime, record)
    assert loop_runtime.thresholds.state("manufacturing", "schema_drift").rejected == 1
    again = run(loop_runtime, clock, "manufacturing")  # the same data: nothing new is proposed or counted
    assert again.counts["proposals"] == 0
    assert again.counts["proposals_existing"] == 1
    assert again.counts["rejected"] == 0
    assert again.outcome == "success"
    assert loop_runtime.thresholds.state("manufacturing", "schema_drift").rejected == 1


def test_failed_monitor_runs_no_later_phase(loop_runtime: Runtime, clock: ManualClock) -> None:
    """A sector nobody installed a snapshot for: its observations are refused at ingest, and a cycle's Monitor
    fails, nothing is detected, planned or executed."""
    with pytest.raises(InvalidInputError, match="no installed sector pack"):
        ingest(loop_runtime, clock, [observation("energy", "meter.read", {"kwh": 3}, MONDAY_10 + i, f"e-{i}")
                                     for i in range(200)])
    before = loop_runtime.ledger.tree_size("receipts")
    record = run(loop_runtime, clock, "energy")
    assert record.outcome == "failed"
    assert record.error is not None
    assert "no current snapshot" in record.error
    assert kinds(loop_runtime, record.receipt_ids) == ["cycle.started", "cycle.completed"]
    written = loop_runtime.ledger.entries("receipts", after_seq=before - 1, limit=100)
    assert [e.kind for e in written] == ["cycle.started", "cycle.completed"]
    assert written[-1].fields["outcome"] == "failed"
    assert loop_runtime.proposals.find(sector="energy") == []
    stored = loop_runtime.coordinator.cycle(record.id)
    assert stored is not None
    assert stored["outcome"] == "failed"
    assert stored["error"] == record.error


def test_rerunning_a_cycle_on_the_same_data_changes_nothing(loop_runtime: Runtime, clock: ManualClock) -> None:
    refunds = [observation("finance", "refund.issued", {"account_id": "a1", "transaction_amount": 10.5},
                           MONDAY_10 + i * 1_000_000, f"rf-{i}") for i in range(5)]
    ingest(loop_runtime, clock, refunds + [observation("manufacturing", "maintenance.completed",
                                                       {"machine_id": "m", "technician": "t", "duration_min": 3},
                                                       MONDAY_10 + i, f"mm-{i}") for i in range(3)])
    clock.advance(1)
    for sector in ("finance", "manufacturing"):
        first = loop_runtime.coordinator.run_cycle(sector)
        proposals = {(p.id, s.status) for p, s in loop_runtime.proposals.find(sector=sector)}
        current = loop_runtime.registry.current(sector)
        created = len(loop_runtime.ledger.entries("receipts", kind="proposal.created", limit=1000))
        promoted = len(loop_runtime.ledger.entries("receipts", kind="snapshot.promoted", limit=1000))
        second = loop_runtime.coordinator.run_cycle(sector)  # same clock, same data
        assert {(p.id, s.status) for p, s in loop_runtime.proposals.find(sector=sector)} == proposals
        assert loop_runtime.registry.current(sector) == current
        assert len(loop_runtime.ledger.entries("receipts", kind="proposal.created", limit=1000)) == created
        assert len(loop_runtime.ledger.entries("receipts", kind="snapshot.promoted", limit=1000)) == promoted
        assert second.counts["proposals"] == 0
        assert second.counts["promotions"] == 0
        assert first.counts["proposals"] == 1
    assert len(loop_runtime.ledger.entries("receipts", kind="proposal.held", limit=1000)) == 1


def test_alerts_are_receipted_per_alert(loop_runtime: Runtime, clock: ManualClock) -> None:
    errors = [observation("logistics", "route.error", {"route_id": "r1", "error_code": "E"},
                          MONDAY_10 + i * 100_000, f"re-{i}") for i in range(20)]
    ingest(loop_runtime, clock, errors)
    record = run(loop_runtime, clock, "logistics")
    names = check_receipts(loop_runtime, record)
    assert "alert.raised" in names
    assert [a["level"] for a in record.alerts] == ["warning"]
    clock.advance(30)  # silence: the heartbeat detector raises a critical alert
    silent = run(loop_runtime, clock, "logistics")
    assert "critical" in [a["level"] for a in silent.alerts]
