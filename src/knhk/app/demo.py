"""The scripted replay behind ``knhk demo``: the main job, on a fresh embedded store.

Loads the four bundled sector packs, replays each sector's recorded scenario through the loop on the
recording's own clock (observations ingested in the order they happened, one MAPE-K cycle every minute of
scenario time), applies the approvals the script calls for, checkpoints and verifies the whole ledger, and
returns what a compliance officer needs per sector: the patterns found, each proposal's fate (promoted; rejected
with the failing stage and reason; held), refused approvals, guard violations and alerts, the snapshot lineage,
and the ledger verdict with the checkpoint roots. The CLI prints it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.errors import KnhkError
from knhk.ledger.store import StoredCheckpoint
from knhk.ledger.verify import VerifyReport
from knhk.ontology.namespaces import KNHK, OWL, RDF, RDF_TYPE, RDFS, SH, XSD, literal
from knhk.ops.clock import ManualClock, parse_rfc3339
from knhk.proof.entry import Entry
from knhk.proposals.delta import DeltaSigma
from knhk.proposals.proposer import Plan
from knhk.sectors.pack import available_sectors
from knhk.sectors.scenario import Scenario, load_scenario

INGEST_SPAN_US = 5_000_000  # ingest in slices of 5 s of scenario time, so replayed data is never "skewed"


@dataclass(frozen=True)
class DemoRun:
    """The whole demo: per-sector reports, the checkpoints issued at the end and both logs' verification."""

    data_dir: Path
    reports: dict[str, dict[str, Any]]
    receipts_checkpoint: StoredCheckpoint
    audit_checkpoint: StoredCheckpoint
    receipts: VerifyReport
    audit: VerifyReport
    elapsed_s: float
    changes: list[dict[str, Any]] = field(default_factory=list)  # one standard, one major, one emergency change

    @property
    def ok(self) -> bool:
        return self.receipts.ok and self.audit.ok


def run(data_dir: Path, *, on_sector: Callable[[str, dict[str, Any]], None] | None = None) -> DemoRun:
    """Replay every sector's scenario into a fresh store in ``data_dir``; ``on_sector`` sees each report."""
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'knhk.db'}")
    clock = ManualClock()
    reports: dict[str, dict[str, Any]] = {}
    with Runtime.open(settings, loop_clock=clock) as rt:
        for sector in available_sectors():
            scenario = load_scenario(sector)
            replayed = replay_sector(rt, clock, scenario)
            reports[sector] = sector_report(rt, scenario, replayed)
            if on_sector is not None:
                on_sector(sector, reports[sector])
        changes = change_classes(rt, clock)
        for sector, sector_report_ in reports.items():  # the three changes moved two sectors on
            now_current = rt.registry.current(sector)
            if now_current is not None:
                sector_report_["current_snapshot"] = now_current.id
        receipts_cp = rt.ledger.checkpoint("receipts")
        audit_cp = rt.ledger.checkpoint("audit")
        receipts = rt.ledger.verify("receipts")
        audit = rt.ledger.verify("audit")
    return DemoRun(data_dir, reports, receipts_cp, audit_cp, receipts, audit, time.perf_counter() - started,
                   changes)


def _receipts_of(rt: Runtime, pid: str, snapshot_id: str, after_seq: int) -> list[dict[str, Any]]:
    out = []
    for e in rt.ledger.entries("receipts", after_seq=after_seq, limit=10_000):
        data = e.data or {}
        if e.subject in (pid, snapshot_id) or data.get("proposal_id") == pid:
            out.append({"seq": e.seq, "kind": e.kind, "outcome": e.outcome, "change_class": data.get("change_class")})
    return out


def change_classes(rt: Runtime, clock: ManualClock) -> list[dict[str, Any]]:
    """Three people's changes after the replays, one per path (docs/change-governance.md): a standard one the
    loop promotes alone, a major one held for two approvers and its 24 h review window, an emergency one an
    operator promotes at once and a validator reviews after."""
    svc = rt.proposals
    head = rt.ledger.head("receipts")
    start = -1 if head is None else head.seq
    out: list[dict[str, Any]] = []

    def report(pid: str, story: str) -> None:
        proposal, status = svc.get(pid)
        out.append({"proposal_id": pid, "sector": proposal.sector, "change_class": status.change_class,
                    "class_reason": status.class_reason, "status": status.status, "story": story,
                    "receipts": _receipts_of(rt, pid, proposal.candidate_id, start)})

    mfg, hc = "https://knhk.dev/ns/manufacturing#", "https://knhk.dev/ns/healthcare#"
    # standard: a new event type with an optional field; the next cycle promotes it, nobody approves
    standard, _ = svc.create("manufacturing", Plan(DeltaSigma.of(_event_type(mfg, "ToolChanged", "tool.changed",
                                                                             "tool_id")), "tool changes"),
                             pattern=None, author="ines@plant.example", proposer="human")
    rt.coordinator.run_cycle("manufacturing")
    report(standard.id, "promoted by the loop's next cycle without people")
    # major: a tighter ISO 9001 ceiling changes a guard: two approvers, then the 24 h window for objections
    limit = next(t for t in rt.registry.current("manufacturing").triples  # type: ignore[union-attr]
                 if t[0] == f"<{mfg}ISO9001-QUALITY-001>" and t[1] == f"<{KNHK}limit>")
    tighter = (limit[0], limit[1], literal("0.0008", XSD + "decimal"))
    major, _ = svc.create("manufacturing", Plan(DeltaSigma.of([tighter], [limit]), "a tighter defect ceiling"),
                          pattern=None, author="ines@plant.example", proposer="human")
    svc.execute(major.id)
    for who in ("quality-lead@plant.example", "plant-manager@plant.example"):
        svc.decide(major.id, identity=who, roles=["validator"], sector_attr="manufacturing",
                   comment="scripted demo approval")
    clock.set(clock.now_us() + rt.proposals.classes_for("manufacturing").review_window_s * 1_000_000 + 1_000_000)
    rt.coordinator.run_cycle("manufacturing")
    report(major.id, "two approvers, no objection in the 24 h window, then promoted by the loop")
    # emergency: a new ward's event type cannot wait for a doctor; the operator promotes it, a validator reviews
    ward, _ = svc.create("healthcare", Plan(DeltaSigma.of(_event_type(hc, "BedAssigned", "bed.assigned", "bed")),
                                            "beds of the new ward"),
                         pattern=None, author="hal@hospital.example", proposer="human")
    svc.execute(ward.id)
    svc.emergency(ward.id, identity="olga@hospital.example", roles=["operator"], sector_attr="healthcare",
                  justification="the new ward opens tonight")
    svc.review(ward.id, identity="vera@hospital.example", verdict="accepted", comment="scripted demo review")
    report(ward.id, "promoted at once by an operator with MFA, reviewed after by a distinct validator")
    return out


def _event_type(ns: str, local: str, event_type: str, optional_field: str) -> list[tuple[str, str, str]]:
    cls, shape, prop, ps = (f"<{ns}{local}>", f"<{ns}{local}Shape>", f"<{ns}{local}_{optional_field}>",
                            f"<{ns}{local}Shape-{optional_field}>")
    t = f"<{RDF_TYPE}>"
    return [(cls, t, f"<{RDFS}Class>"), (cls, t, f"<{OWL}Class>"), (cls, f"<{RDFS}subClassOf>", f"<{KNHK}Event>"),
            (cls, f"<{KNHK}eventType>", literal(event_type)), (shape, t, f"<{SH}NodeShape>"),
            (shape, f"<{SH}targetClass>", cls), (prop, t, f"<{RDF}Property>"), (prop, t, f"<{OWL}DatatypeProperty>"),
            (prop, f"<{RDFS}domain>", cls), (prop, f"<{RDFS}range>", f"<{XSD}string>"),
            (prop, f"<{KNHK}fieldName>", literal(optional_field)), (shape, f"<{SH}property>", ps),
            (ps, f"<{SH}path>", prop), (ps, f"<{SH}datatype>", f"<{XSD}string>")]


def _approve_held(rt: Runtime, scenario: Scenario, log: list[dict[str, Any]]) -> None:
    for proposal, _status in rt.proposals.find(sector=scenario.sector, status="held", limit=100):
        for approver in scenario.approvers:
            _p, status = rt.proposals.get(proposal.id)
            if status.status != "held":
                break
            try:
                result = rt.proposals.decide(proposal.id, identity=approver.name, roles=approver.roles,
                                             sector_attr=approver.sector, comment="scripted demo approval")
                log.append({"proposal_id": proposal.id, "approver": approver.name, "roles": list(approver.roles),
                            "sector": approver.sector, "result": "recorded", "proposal_outcome": result.outcome})
            except KnhkError as exc:
                log.append({"proposal_id": proposal.id, "approver": approver.name, "roles": list(approver.roles),
                            "sector": approver.sector, "result": "refused", "reason": exc.message})


def replay_sector(rt: Runtime, clock: ManualClock, scenario: Scenario) -> dict[str, Any]:
    events = sorted(scenario.events, key=lambda e: e["timestamp"])
    times = [_ts(e) for e in events]
    cycles: list[dict[str, Any]] = []
    approvals: list[dict[str, Any]] = []
    clock.set(scenario.start_us)
    rt.engine.monitor(scenario.sector)
    i = 0
    step = scenario.cycle_every_s * 1_000_000
    end = scenario.start_us + scenario.end_s * 1_000_000
    cycle_at = scenario.start_us + step
    stops = []
    while cycle_at <= end:
        stops.append(cycle_at)
        cycle_at += step
    stops.append(end + scenario.final_cycle_after_s * 1_000_000)
    for stop in stops:
        while i < len(events) and times[i] <= stop:
            j = i
            while j < len(events) and times[j] <= stop and times[j] - times[i] < INGEST_SPAN_US:
                j += 1
            clock.set(max(times[j - 1], clock.now_us()))
            rt.ingestor.ingest_batch(events[i:j], client="demo-replay")
            i = j
        clock.set(stop)
        record = rt.coordinator.run_cycle(scenario.sector)
        cycles.append(dict(record.to_json()))
        _approve_held(rt, scenario, approvals)
    return {"cycles": cycles, "approvals": approvals, "events": len(events)}


def _ts(event: dict[str, Any]) -> int:
    return parse_rfc3339(event["timestamp"])


def sector_report(rt: Runtime, scenario: Scenario, replayed: dict[str, Any]) -> dict[str, Any]:
    sector = scenario.sector
    patterns: Counter[str] = Counter()
    for c in replayed["cycles"]:
        for p in c["patterns"]:
            patterns[p["name"]] += 1
    proposals = []
    for p, s in rt.proposals.find(sector=sector, limit=1000):
        validations = rt.proposals.validations(p.id)
        report = validations[-1]["report"] if validations else None
        proposals.append({"id": p.id, "pattern": p.pattern, "status": s.status, "reason": s.reason,
                          "rationale": p.rationale, "snapshot_id": p.candidate_id,
                          "failed_stage": None if report is None else report["failed_stage"],
                          "history": [v["outcome"] for v in validations],
                          "held_for": [] if not validations else [
                              a["doctrine_id"] for v in validations for a in v["report"]["pending_approvals"]],
                          "warnings": [] if report is None else report["warnings"],
                          "approvals": [{"subject": a["subject"], "roles": a["roles"], "sector": a["sector"]}
                                        for a in rt.proposals.approvals(p.id)]})
    proposals.reverse()
    guard = rt.ledger.entries("receipts", kind="guard.violated", sector=sector, limit=1000)
    alerts = rt.ledger.entries("receipts", kind="alert.raised", sector=sector, limit=1000)
    current = rt.registry.current(sector)
    assert current is not None
    history = {h.snapshot_id: h for h in rt.registry.history(sector)}
    lineage = [{"id": i.id, "origin": i.origin, "proposal_id": i.proposal_id,
                "action": history[i.id].action if i.id in history else None} for i in rt.registry.lineage(current.id)]
    counts = Counter(p["status"] for p in proposals)
    return {
        "cycles": len(replayed["cycles"]),
        "patterns": sum(patterns.values()),
        "proposals": len(proposals),
        "promoted": counts["promoted"],
        "rejected": counts["rejected"],
        "held": counts["held"],
        "current_snapshot": current.id,
        "events": replayed["events"],
        "pattern_names": dict(sorted(patterns.items())),
        "proposal_details": proposals,
        "approvals": replayed["approvals"],
        "guard_violations": [{"reason": e.reason, "data": e.data} for e in guard],
        "alerts": Counter(_alert_text(e) for e in alerts),
        "lineage": lineage,
        "exercises": list(scenario.exercises),
    }


def _alert_text(entry: Entry) -> str:
    data = entry.data or {}
    if data.get("source") == "guard":
        return f"{entry.outcome}: guard {data.get('guard_id')} violated by observation {entry.subject}"
    return f"{entry.outcome}: {entry.subject}"
