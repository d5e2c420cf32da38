"""One MAPE-K cycle for one sector (SPEC §1), with every step receipted in the ledger.

Monitor (the sector's current snapshot and windows) → Analyze (the detectors, with learned thresholds) →
Plan (the rule-based proposer turns patterns into ΔΣ proposals) → Execute (validate → shadow → approval gate
→ promote) → Knowledge (outcomes adjust the thresholds). Receipts: ``cycle.started``, one
``pattern.detected`` per pattern, ``proposal.created`` per new proposal, ``proposal.validated`` per
validation, ``proposal.held``, ``snapshot.promoted``, ``alert.raised`` per alert, ``cycle.completed``.

A cycle is level-triggered and idempotent: proposals are content-addressed, so re-running on the same data
finds the same proposals already decided and creates or promotes nothing new. Outcome: ``success``;
``partial`` when a proposal was rejected or held; ``failed`` when Monitor, Analyze or Plan failed (then no
later phase runs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uuid_utils

from knhk.detection.engine import DetectionEngine
from knhk.detection.pattern import Pattern
from knhk.detection.thresholds import ThresholdBook
from knhk.ledger.entry import EntryDraft
from knhk.ledger.ledger import Ledger
from knhk.loop.evidence import commitments, store_sets
from knhk.loop.proposals import Execution, ProposalService
from knhk.ontology.registry import SnapshotRegistry
from knhk.ops import telemetry
from knhk.ops.clock import Clock
from knhk.proposals.proposer import DriftFinding, ObservedField, Plan, RateFinding, propose_drift, propose_rate_limit
from knhk.storage import loop_store as sql
from knhk.storage.database import Database

log = logging.getLogger("knhk.loop")


@dataclass
class CycleRecord:
    id: str
    sector: str
    started_us: int
    finished_us: int = 0
    outcome: str = "success"
    counts: dict[str, int] = field(default_factory=dict)
    receipt_ids: list[str] = field(default_factory=list)
    error: str | None = None
    patterns: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "sector": self.sector, "started_us": self.started_us,
                "finished_us": self.finished_us, "outcome": self.outcome, "counts": self.counts,
                "duration_ms": round(self.duration_ms, 3), "receipt_ids": self.receipt_ids, "error": self.error,
                "patterns": self.patterns, "proposals": self.proposals, "alerts": self.alerts}


def _decode_sample(text: Any) -> object:
    if not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def finding_of(pattern: Pattern) -> DriftFinding | RateFinding | None:
    d = pattern.details
    if pattern.kind == "schema_drift":
        fields = tuple(
            ObservedField(name, frozenset(info.get("kinds", [])),
                          tuple(_decode_sample(s) for s in info.get("samples", [])),
                          bool(info.get("present_in_all", False)))
            for name, info in sorted(dict(d.get("fields", {})).items()))
        return DriftFinding(str(d["event_type"]), bool(d.get("new_type")), fields, int(d.get("count", 0)))
    if pattern.kind == "high_frequency":
        return RateFinding(str(d["event_type"]), int(d["count"]), int(d.get("window_s", 60)))
    return None


class Coordinator:
    """Runs cycles for any sector of one installation."""

    def __init__(self, db: Database, ledger: Ledger, registry: SnapshotRegistry, engine: DetectionEngine,
                 thresholds: ThresholdBook, proposals: ProposalService, clock: Clock) -> None:
        self.db = db
        self.ledger = ledger
        self.registry = registry
        self.engine = engine
        self.thresholds = thresholds
        self.proposals = proposals
        self.clock = clock

    def plan(self, sector: str, pattern: Pattern) -> Plan | None:
        finding = finding_of(pattern)
        if finding is None:
            return None
        base = self.registry.current(sector)
        if base is None:
            return None
        schema = self.registry.current_schema(sector)
        if isinstance(finding, DriftFinding):
            return propose_drift(sector, base.triples, schema, finding)
        return propose_rate_limit(sector, base.triples, schema, finding)

    @telemetry.traced_cycle
    def run_cycle(self, sector: str) -> CycleRecord:
        t0 = time.perf_counter()
        now = self.clock.now_us()
        record = CycleRecord(str(uuid_utils.uuid7()), sector, now)
        counts = dict.fromkeys(("observations", "patterns", "proposals", "proposals_existing", "validations_passed",
                                "validations_failed", "promotions", "held", "rejected", "alerts", "detector_errors"), 0)
        started = self.ledger.append(EntryDraft(log="receipts", kind="cycle.started", sector=sector,
                                                subject=record.id, outcome="started",
                                                data={"cycle_id": record.id, "at_us": now}))
        record.receipt_ids.append(started.id)
        executions: list[tuple[Pattern, Execution]] = []
        try:
            # Monitor
            telemetry.phase("monitor", record.id)
            current = self.registry.refresh(sector)
            if current is None:
                raise RuntimeError(f"sector {sector} has no current snapshot")
            schema = self.registry.current_schema(sector)
            counts["observations"] = self.engine.window_size(sector, now)
            # Analyze
            telemetry.phase("analyze", record.id)
            result = self.engine.detect(sector, schema, now, thresholds=self.thresholds.thresholds(sector),
                                        populations=True)
            counts["detector_errors"] = len(result.errors)
            patterns = list(result.patterns)
            counts["patterns"] = len(patterns)
            committed = commitments(self.db, patterns)  # every receipt commits to all of its evidence
            if patterns:
                store_sets(self.db, sector, committed.values(), now)
                entries = self.ledger.append_many([EntryDraft(
                    log="receipts", kind="pattern.detected", sector=sector, subject=p.name, outcome="detected",
                    reason=p.recommended_action, evidence=list(committed[p.name].sample),
                    data={"cycle_id": record.id, **p.receipt_data(), **committed[p.name].data()}) for p in patterns])
                record.receipt_ids += [e.id for e in entries]
            record.patterns = [{"name": p.name, "confidence": p.confidence, "action": p.recommended_action,
                                "evidence": len(p.evidence)} for p in patterns]
            # Plan
            telemetry.phase("plan", record.id)
            planned: list[tuple[Pattern, str, bool]] = []
            for p in patterns:
                plan = self.plan(sector, p)
                if plan is None or plan.delta.is_empty:
                    continue
                proposal, created = self.proposals.create(sector, plan, pattern=p.name)
                planned.append((p, proposal.id, created))
                counts["proposals" if created else "proposals_existing"] += 1
                if created and proposal.receipt_id is not None:
                    record.receipt_ids.append(proposal.receipt_id)
        except Exception as exc:
            log.exception("cycle %s of %s failed", record.id, sector)
            record.outcome = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            return self._finish(record, counts, t0)
        # Execute
        telemetry.phase("execute", record.id)
        for p, pid, _created in planned:
            try:
                execution = self.proposals.execute(pid, revalidate_held=False)
            except Exception as exc:
                log.exception("executing proposal %s failed", pid)
                record.proposals.append({"id": pid, "pattern": p.name, "outcome": "error", "reason": str(exc)})
                record.outcome = "partial"
                continue
            executions.append((p, execution))
            record.receipt_ids += execution.receipts
            report = execution.report
            if report is None and execution.outcome != "expired":
                # decided in an earlier cycle, or held for people: nothing happened to it now
                record.proposals.append({"id": execution.proposal.id, "pattern": p.name,
                                         "outcome": execution.outcome, "failed_stage": None,
                                         "reason": "held for approval since an earlier cycle"
                                         if execution.outcome == "held" else "already decided in an earlier cycle",
                                         "snapshot_id": None})
                continue
            if report is not None and report.outcome in ("approved", "held"):
                counts["validations_passed"] += 1
            elif report is not None and report.outcome == "rejected":
                counts["validations_failed"] += 1
            if execution.outcome == "promoted":
                counts["promotions"] += 1
            elif execution.outcome == "held":
                counts["held"] += 1
            elif execution.outcome == "rejected":
                counts["rejected"] += 1
            record.proposals.append({
                "id": execution.proposal.id if execution.rebased_to is None else execution.rebased_to,
                "pattern": p.name, "outcome": execution.outcome,
                "failed_stage": None if report is None else report.failed_stage,
                "reason": None if report is None else report.reason,
                "snapshot_id": execution.promoted_snapshot})
        for expired in self.proposals.expire_overdue(sector):
            record.receipt_ids += expired.receipts
        # Alerts (SPEC §1 order: after the Execute phase's receipts, before cycle.completed)
        telemetry.phase("knowledge", record.id)
        for p in patterns:
            if p.alert_level is not None:
                alert = self.ledger.append(EntryDraft(
                    log="receipts", kind="alert.raised", sector=sector, subject=p.name, outcome=p.alert_level,
                    reason=p.recommended_action, evidence=list(committed[p.name].sample),
                    data={"cycle_id": record.id, "pattern": p.name, "level": p.alert_level,
                          **committed[p.name].data()}))
                record.receipt_ids.append(alert.id)
                record.alerts.append({"pattern": p.name, "level": p.alert_level, "receipt": alert.id})
                counts["alerts"] += 1
        # Knowledge
        for p, execution in executions:
            if execution.outcome in ("promoted", "rejected") and execution.report is not None:
                self.thresholds.record(sector, p.kind, execution.outcome == "promoted")
        if counts["rejected"] or counts["held"]:
            record.outcome = "partial"
        return self._finish(record, counts, t0)

    def _finish(self, record: CycleRecord, counts: dict[str, int], t0: float) -> CycleRecord:
        record.counts = counts
        record.finished_us = self.clock.now_us()
        record.duration_ms = (time.perf_counter() - t0) * 1000
        done = self.ledger.append(EntryDraft(
            log="receipts", kind="cycle.completed", sector=record.sector, subject=record.id, outcome=record.outcome,
            reason=record.error,
            data={"cycle_id": record.id, "counts": counts, "duration_us": int(record.duration_ms * 1000),
                  "receipts": len(record.receipt_ids) + 1}))
        record.receipt_ids.append(done.id)
        with self.db.transaction() as conn:
            sql.insert_cycle(conn, {"id": record.id, "sector": record.sector, "started_us": record.started_us,
                                    "finished_us": record.finished_us, "outcome": record.outcome, "counts": counts,
                                    "receipt_ids": record.receipt_ids, "error": record.error})
        return record

    def cycle(self, cycle_id: str) -> dict[str, Any] | None:
        with self.db.connection() as conn:
            return sql.get_cycle(conn, cycle_id)
