"""One MAPE-K cycle for one sector (SPEC §1), with every step receipted in the ledger.

Monitor (the sector's current snapshot and windows) → Analyze (the detectors, with learned thresholds) →
Plan (the rule-based proposer, or the LLM proposer when configured with the rule proposer as its fallback,
turns patterns into ΔΣ proposals) → Execute (validate → shadow → approval gate
→ promote) → Knowledge (outcomes adjust the thresholds). Receipts: ``cycle.started``, one
``pattern.detected`` per pattern, ``proposer.fallback`` per pattern the LLM proposer failed on,
``proposal.created`` per new proposal, ``proposal.validated`` per
validation, ``proposal.held``, ``snapshot.promoted``, ``alert.raised`` per alert, ``cycle.completed``.

A cycle is level-triggered and idempotent: proposals are content-addressed, so re-running on the same data
finds the same proposals already decided and creates or promotes nothing new. Outcome: ``success``;
``partial`` when a proposal was rejected or held; ``failed`` when Monitor, Analyze or Plan failed (then no
later phase runs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired

import orjson
import uuid_utils
from typing_extensions import TypedDict

from knhk.detection.engine import DetectionEngine
from knhk.detection.pattern import Pattern
from knhk.detection.thresholds import ThresholdBook
from knhk.errors import InvalidInputError, NotFoundError
from knhk.ledger import receipts
from knhk.ledger.ledger import Ledger
from knhk.loop import store as sql
from knhk.loop.evidence import commitments, store_sets
from knhk.loop.planner import LLM_PROPOSER, LlmPlanner
from knhk.loop.proposals import Execution, ProposalService
from knhk.ontology.registry import SnapshotRegistry
from knhk.ontology.schema import SectorSchema
from knhk.ops import telemetry
from knhk.ops.clock import Clock
from knhk.ops.telemetry.metrics import LLM_PLANS
from knhk.proof.evidence import Commitment
from knhk.proposals.proposer import DriftFinding, ObservedField, Plan, RateFinding, propose_drift, propose_rate_limit
from knhk.storage.database import Database

log = logging.getLogger("knhk.loop")


class PatternSummary(TypedDict):
    """A pattern the cycle acted on, as its record shows it."""

    name: str
    confidence: float
    action: str
    evidence: int


class ProposalOutcome(TypedDict):
    """What the cycle's Execute phase did with one proposal."""

    id: str
    pattern: str
    outcome: str
    failed_stage: NotRequired[str | None]
    reason: str | None
    snapshot_id: NotRequired[str | None]


class AlertSummary(TypedDict):
    pattern: str
    level: str
    receipt: str


_COUNTS = ("observations", "patterns", "proposals", "proposals_existing", "validations_passed",
           "validations_failed", "promotions", "held", "rejected", "alerts", "detector_errors")


@dataclass(frozen=True, eq=False)  # equality is the mapping's: a stored counts object equals its record's
class CycleCounts(Mapping[str, int]):
    """What one cycle counted (SPEC §1), by phase; readable as a mapping in the order the record stores it."""

    observations: int = 0  # Monitor: in the sector's window
    patterns: int = 0  # Analyze
    detector_errors: int = 0
    proposals: int = 0  # Plan: new proposals
    proposals_existing: int = 0  # Plan: planned again, already recorded
    validations_passed: int = 0  # Execute
    validations_failed: int = 0
    promotions: int = 0
    held: int = 0
    rejected: int = 0
    alerts: int = 0

    def __getitem__(self, key: str) -> int:
        if key not in _COUNTS:
            raise KeyError(key)
        value: int = getattr(self, key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_COUNTS)

    def __len__(self) -> int:
        return len(_COUNTS)

    def to_json(self) -> dict[str, int]:
        return {key: self[key] for key in _COUNTS}


class CycleView(TypedDict):
    """A cycle record as the API and the CLI answer it (stored records lack the last four)."""

    id: str
    sector: str
    started_us: int
    finished_us: int
    outcome: str
    counts: dict[str, int]
    receipt_ids: list[str]
    error: str | None
    duration_ms: NotRequired[float]
    patterns: NotRequired[list[PatternSummary]]
    proposals: NotRequired[list[ProposalOutcome]]
    alerts: NotRequired[list[AlertSummary]]


@dataclass
class CycleRecord:
    id: str
    sector: str
    started_us: int
    finished_us: int = 0
    outcome: str = "success"
    counts: CycleCounts = field(default_factory=CycleCounts)
    receipt_ids: list[str] = field(default_factory=list)
    error: str | None = None
    patterns: list[PatternSummary] = field(default_factory=list)
    proposals: list[ProposalOutcome] = field(default_factory=list)
    alerts: list[AlertSummary] = field(default_factory=list)
    duration_ms: float = 0.0

    def to_json(self) -> CycleView:
        return {"id": self.id, "sector": self.sector, "started_us": self.started_us,
                "finished_us": self.finished_us, "outcome": self.outcome, "counts": self.counts.to_json(),
                "duration_ms": round(self.duration_ms, 3), "receipt_ids": self.receipt_ids, "error": self.error,
                "patterns": self.patterns, "proposals": self.proposals, "alerts": self.alerts}


# -- what each phase hands to the next ----------------------------------------------------------------------
@dataclass(frozen=True)
class Monitored:
    """Monitor: the sector's current snapshot and what its windows hold now."""

    snapshot_id: str
    schema: SectorSchema
    observations: int


@dataclass(frozen=True)
class Analysis:
    """Analyze: the patterns above their thresholds (each receipted) and how many detectors failed."""

    patterns: list[Pattern]
    detector_errors: int
    #: pattern name → what its receipts commit to (every observation it rests on, SPEC §8)
    commitments: Mapping[str, Commitment] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedChange:
    pattern: Pattern
    proposal_id: str
    created: bool  # False: the same ΔΣ on the same base was proposed before


@dataclass(frozen=True)
class Planning:
    """Plan: one proposal per pattern the proposer turned into a non-empty ΔΣ."""

    changes: list[PlannedChange]

    @property
    def created(self) -> int:
        return sum(1 for c in self.changes if c.created)

    @property
    def existing(self) -> int:
        return sum(1 for c in self.changes if not c.created)


@dataclass(frozen=True)
class Executed:
    """Execute: what became of each planned proposal (validated, promoted, held, rejected, or an error)."""

    executions: list[tuple[Pattern, Execution]]
    outcomes: list[ProposalOutcome]
    validations_passed: int
    validations_failed: int
    promotions: int
    held: int
    rejected: int
    errors: int


@dataclass(frozen=True)
class Alerting:
    alerts: list[AlertSummary]


@dataclass(frozen=True)
class Learning:
    """Knowledge: how many proposal outcomes adjusted a learned threshold."""

    recorded: int


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
                 thresholds: ThresholdBook, proposals: ProposalService, clock: Clock,
                 llm: LlmPlanner | None = None) -> None:
        self.llm = llm  # the optional LLM proposer; None: the rule proposer only
        self.db = db
        self.ledger = ledger
        self.registry = registry
        self.engine = engine
        self.thresholds = thresholds
        self.proposals = proposals
        self.clock = clock

    def plan(self, sector: str, pattern: Pattern) -> Plan | None:
        """The rule proposer's plan for a pattern (None: nothing to propose)."""
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

    def _plan_with_llm(self, record: CycleRecord, pattern: Pattern, rule_plan: Plan | None,
                       llm: LlmPlanner) -> PlannedChange | None:
        """Ask the LLM proposer; its ΔΣ becomes a proposal (proposer ``llm``) that the same pipeline validates.
        None after a ``proposer.fallback`` receipt: the caller plans with the rule proposer."""
        from knhk.proposals.llm import LlmFailure  # loaded with the planner: only an installation with an LLM

        finding = finding_of(pattern)
        if finding is None:
            return None
        sector = record.sector
        digest: str | None = None
        try:
            ctx = llm.context(sector, self.registry.current_schema(sector), pattern, finding, rule_plan)
            answer = llm.plan(ctx)
            digest = answer.prompt_digest
            proposal, created = self.proposals.create(sector, answer.plan, pattern=pattern.name, author=LLM_PROPOSER,
                                                      proposer="llm", llm=answer.receipt_data())
        except LlmFailure as exc:
            reason, message = exc.reason, exc.message
            digest = exc.details.get("prompt_digest", digest)
            details = {k: v for k, v in exc.details.items() if k in ("status", "limit", "spent", "budget")}
        except InvalidInputError as exc:  # the ΔΣ could not even be recorded (e.g. a term no snapshot can hold)
            reason, message, details = "refused", f"the LLM's ΔΣ was refused: {exc}", {}
        else:
            LLM_PLANS.labels(sector, "ok").inc()
            if created and proposal.receipt_id is not None:
                record.receipt_ids.append(proposal.receipt_id)
            return PlannedChange(pattern, proposal.id, created)
        LLM_PLANS.labels(sector, reason).inc()
        log.warning("LLM proposer gave no usable ΔΣ for %s (%s): %s; the rule proposer plans", pattern.name, reason,
                    message)
        entry = self.ledger.append(receipts.proposer_fallback(
            sector=sector, cycle_id=record.id, pattern=pattern.name, reason=reason, message=message,
            model=llm.model, prompt_digest=digest, details=details))
        record.receipt_ids.append(entry.id)
        return None

    @telemetry.traced_cycle
    def run_cycle(self, sector: str) -> CycleRecord:
        """Monitor → Analyze → Plan → Execute (then alerts) → Knowledge, each step receipted. A failure of
        Monitor, Analyze or Plan fails the cycle and no later phase runs."""
        t0 = time.perf_counter()
        now = self.clock.now_us()
        record = CycleRecord(str(uuid_utils.uuid7()), sector, now)
        record.receipt_ids.append(
            self.ledger.append(receipts.cycle_started(sector=sector, cycle_id=record.id, at_us=now)).id)
        seen: Monitored | None = None
        found: Analysis | None = None
        try:
            telemetry.phase("monitor", record.id)
            seen = self.monitor(sector, now)
            telemetry.phase("analyze", record.id)
            found = self.analyze(record, seen, now)
            telemetry.phase("plan", record.id)
            planning = self.plan_changes(record, found)
        except Exception as exc:
            log.exception("cycle %s of %s failed", record.id, sector)
            record.outcome = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            record.counts = CycleCounts(
                observations=seen.observations if seen else 0, patterns=len(found.patterns) if found else 0,
                detector_errors=found.detector_errors if found else 0)
            return self._finish(record, t0)
        telemetry.phase("execute", record.id)
        executed = self.execute(record, planning)
        telemetry.phase("knowledge", record.id)  # the alerts, then what the outcomes teach the thresholds
        alerting = self.alert(record, found)
        self.learn(sector, executed)
        record.counts = CycleCounts(
            observations=seen.observations, patterns=len(found.patterns), detector_errors=found.detector_errors,
            proposals=planning.created, proposals_existing=planning.existing,
            validations_passed=executed.validations_passed, validations_failed=executed.validations_failed,
            promotions=executed.promotions, held=executed.held, rejected=executed.rejected,
            alerts=len(alerting.alerts))
        if executed.errors or executed.rejected or executed.held:
            record.outcome = "partial"
        return self._finish(record, t0)

    # -- the phases -----------------------------------------------------------------------------------------
    def monitor(self, sector: str, now_us: int) -> Monitored:
        """The sector's current snapshot (refreshed from the database) and the size of its windows."""
        current = self.registry.refresh(sector)
        if current is None:
            raise NotFoundError(f"sector {sector} has no current snapshot; load its sector pack first")
        return Monitored(current.id, self.registry.current_schema(sector), self.engine.window_size(sector, now_us))

    def analyze(self, record: CycleRecord, seen: Monitored, now_us: int) -> Analysis:
        """Run the detectors with the learned thresholds; receipt each pattern found."""
        sector = record.sector
        result = self.engine.detect(sector, seen.schema, now_us, thresholds=self.thresholds.thresholds(sector),
                                    populations=True)
        patterns = list(result.patterns)
        committed = commitments(self.db, patterns)  # every receipt commits to all of its evidence
        if patterns:
            store_sets(self.db, sector, committed.values(), now_us)
            entries = self.ledger.append_many([receipts.pattern_detected(
                sector=sector, cycle_id=record.id, name=p.name, action=p.recommended_action,
                evidence=committed[p.name].sample, data=p.receipt_data(), commitment=committed[p.name].data())
                for p in patterns])
            record.receipt_ids += [e.id for e in entries]
        record.patterns = [{"name": p.name, "confidence": p.confidence, "action": p.recommended_action,
                            "evidence": len(p.evidence)} for p in patterns]
        return Analysis(patterns, len(result.errors), committed)

    def plan_changes(self, record: CycleRecord, found: Analysis) -> Planning:
        """Turn each actionable pattern into a proposal (content-addressed: planned again, it is the same one)."""
        changes: list[PlannedChange] = []
        for p in found.patterns:
            plan = self.plan(record.sector, p)
            if self.llm is not None:
                asked = self._plan_with_llm(record, p, plan, self.llm)
                if asked is not None:
                    changes.append(asked)
                    continue
            if plan is None or plan.delta.is_empty:
                continue
            proposal, created = self.proposals.create(record.sector, plan, pattern=p.name)
            changes.append(PlannedChange(p, proposal.id, created))
            if created and proposal.receipt_id is not None:
                record.receipt_ids.append(proposal.receipt_id)
        return Planning(changes)

    def execute(self, record: CycleRecord, planning: Planning) -> Executed:
        """Validate each planned proposal and act on the outcome; expire held proposals past their time. A
        proposal that cannot be executed is reported and the others still run."""
        executions: list[tuple[Pattern, Execution]] = []
        outcomes: list[ProposalOutcome] = []
        passed = failed = promotions = held = rejected = errors = 0
        for change in planning.changes:
            p = change.pattern
            try:
                execution = self.proposals.execute(change.proposal_id, revalidate_held=False)
            except Exception as exc:
                log.exception("executing proposal %s failed", change.proposal_id)
                outcomes.append({"id": change.proposal_id, "pattern": p.name, "outcome": "error", "reason": str(exc)})
                errors += 1
                continue
            executions.append((p, execution))
            record.receipt_ids += execution.receipts
            report = execution.report
            if report is None and execution.outcome != "expired":
                # decided in an earlier cycle, or held for people: nothing happened to it now
                outcomes.append({"id": execution.proposal.id, "pattern": p.name, "outcome": execution.outcome,
                                 "failed_stage": None,
                                 "reason": "held for approval since an earlier cycle" if execution.outcome == "held"
                                 else "already decided in an earlier cycle", "snapshot_id": None})
                continue
            if report is not None and report.outcome in ("approved", "held"):
                passed += 1
            elif report is not None and report.outcome == "rejected":
                failed += 1
            promotions += execution.outcome == "promoted"
            held += execution.outcome == "held"
            rejected += execution.outcome == "rejected"
            outcomes.append({
                "id": execution.proposal.id if execution.rebased_to is None else execution.rebased_to,
                "pattern": p.name, "outcome": execution.outcome,
                "failed_stage": None if report is None else report.failed_stage,
                "reason": None if report is None else report.reason, "snapshot_id": execution.promoted_snapshot})
        for expired in self.proposals.expire_overdue(record.sector):
            record.receipt_ids += expired.receipts
        for released in self.proposals.release_due(record.sector):  # standard changes, closed review windows
            record.receipt_ids += released.receipts
            promotions += released.outcome == "promoted"
        record.receipt_ids += self.proposals.alert_overdue(record.sector)  # emergency reviews past due
        record.proposals = outcomes
        return Executed(executions, outcomes, passed, failed, promotions, held, rejected, errors)

    def alert(self, record: CycleRecord, found: Analysis) -> Alerting:
        """Raise the alerts patterns call for (SPEC §1 order: after Execute's receipts, before cycle.completed)."""
        alerts: list[AlertSummary] = []
        for p in found.patterns:
            if p.alert_level is not None:
                committed = found.commitments.get(p.name)
                entry = self.ledger.append(receipts.pattern_alert(
                    sector=record.sector, cycle_id=record.id, pattern=p.name, level=p.alert_level,
                    action=p.recommended_action, evidence=p.evidence if committed is None else committed.sample,
                    commitment=None if committed is None else committed.data()))
                record.receipt_ids.append(entry.id)
                alerts.append({"pattern": p.name, "level": p.alert_level, "receipt": entry.id})
        record.alerts = alerts
        return Alerting(alerts)

    def learn(self, sector: str, executed: Executed) -> Learning:
        """Knowledge: proposals the loop promoted or rejected now adjust their pattern kind's threshold."""
        recorded = 0
        for p, execution in executed.executions:
            if execution.outcome in ("promoted", "rejected") and execution.report is not None:
                self.thresholds.record(sector, p.kind, execution.outcome == "promoted")
                recorded += 1
        return Learning(recorded)

    def _finish(self, record: CycleRecord, t0: float) -> CycleRecord:
        counts = record.counts.to_json()
        record.finished_us = self.clock.now_us()
        record.duration_ms = (time.perf_counter() - t0) * 1000
        done = self.ledger.append(receipts.cycle_completed(
            sector=record.sector, cycle_id=record.id, outcome=record.outcome, error=record.error, counts=counts,
            duration_us=int(record.duration_ms * 1000), receipts=len(record.receipt_ids) + 1))
        record.receipt_ids.append(done.id)
        with self.db.transaction() as conn:
            sql.insert_cycle(conn, {"id": record.id, "sector": record.sector, "started_us": record.started_us,
                                    "finished_us": record.finished_us, "outcome": record.outcome, "counts": counts,
                                    "receipt_ids": record.receipt_ids, "error": record.error})
        return record

    def cycle(self, cycle_id: str) -> dict[str, Any] | None:
        with self.db.connection() as conn:
            return sql.get_cycle(conn, cycle_id)

    def recent(self, sector: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Stored cycle records, newest first."""
        with self.db.connection() as conn:
            return sql.list_cycles(conn, sector, limit)
