"""``knhk demo``: the main job, on a fresh embedded store.

Loads the four bundled sector packs, replays each sector's recorded scenario through the loop on the
recording's own clock (observations ingested in the order they happened, one MAPE-K cycle every minute of
scenario time), applies the approvals the script calls for, verifies the whole ledger, and prints what a
compliance officer needs: per sector the patterns found, each proposal's fate (promoted; rejected with the
failing stage and reason; held), refused approvals, guard violations and alerts, the snapshot lineage, and
the ledger verdict with the checkpoint roots.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from knhk.cli.output import print_json, say, table
from knhk.config import Settings
from knhk.errors import KnhkError
from knhk.ops.clock import ManualClock
from knhk.proof.entry import Entry
from knhk.runtime import Runtime
from knhk.sectors.pack import available_sectors
from knhk.sectors.scenario import Scenario, load_scenario

INGEST_SPAN_US = 5_000_000  # ingest in slices of 5 s of scenario time, so replayed data is never "skewed"


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
        cycles.append(record.to_json())
        _approve_held(rt, scenario, approvals)
    return {"cycles": cycles, "approvals": approvals, "events": len(events)}


def _ts(event: dict[str, Any]) -> int:
    from knhk.ops.clock import parse_rfc3339

    return parse_rfc3339(event["timestamp"])


def sector_report(rt: Runtime, scenario: Scenario, run: dict[str, Any]) -> dict[str, Any]:
    sector = scenario.sector
    patterns: Counter[str] = Counter()
    for c in run["cycles"]:
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
        "cycles": len(run["cycles"]),
        "patterns": sum(patterns.values()),
        "proposals": len(proposals),
        "promoted": counts["promoted"],
        "rejected": counts["rejected"],
        "held": counts["held"],
        "current_snapshot": current.id,
        "events": run["events"],
        "pattern_names": dict(sorted(patterns.items())),
        "proposal_details": proposals,
        "approvals": run["approvals"],
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


def print_sector(sector: str, r: dict[str, Any]) -> None:
    say(f"\n[bold underline]{sector}[/bold underline] — {r['events']} observations replayed, {r['cycles']} cycles")
    say("  Patterns found: " + (", ".join(f"{n} ×{c}" for n, c in r["pattern_names"].items()) or "none"))
    for v in r["guard_violations"]:
        say(f"  Guard violation: {v['reason']}")
    for a, c in sorted(r["alerts"].items()):
        say(f"  Alert {a} (×{c})")
    for p in r["proposal_details"]:
        line = f"  Proposal {p['id'][:17]}… ({p['pattern']}): [bold]{p['status'].upper()}[/bold]"
        if p["status"] == "rejected" and p["failed_stage"]:
            line += f" at stage '{p['failed_stage']}' — {p['reason']}"
        elif p["status"] in ("held", "superseded") and p["reason"]:
            line += f" — {p['reason']}"
        say(line)
        say(f"      why: {p['rationale']}")
        if len(p["history"]) > 1 or p["held_for"]:
            held_for = f" (held for {', '.join(sorted(set(p['held_for'])))})" if p["held_for"] else ""
            say(f"      validations: {' → '.join(p['history'])}{held_for}")
        for w in p["warnings"]:
            say(f"      warning: {w}")
        for a in p["approvals"]:
            say(f"      approved by {a['subject']} ({', '.join(a['roles'])}, sector {a['sector']})")
    for a in r["approvals"]:
        if a["result"] == "refused":
            say(f"  Approval REFUSED for {a['approver']} ({', '.join(a['roles'])}): {a['reason']}")
    say("  Snapshot lineage (current first):")
    for s in r["lineage"]:
        say(f"      {s['id'][:16]}  {s['origin']:<8} {s['action'] or '':<8} {s['proposal_id'] or ''}")


def _command_name() -> str:
    """How the user can call the CLI again: ``knhk`` when it is on PATH, else the path it was run from."""
    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("knhk")
    if here is None or (found is not None and Path(found).resolve() == here):
        return "knhk"
    return os.path.relpath(here) if here.is_relative_to(Path.cwd()) else str(here)


def run_demo(data_dir: Path | None, *, as_json: bool = False) -> int:
    started = time.perf_counter()
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="knhk-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'knhk.db'}")
    clock = ManualClock()
    if not as_json:
        say(f"KNHK demo: a fresh embedded store in {data_dir}")
        say("Replaying the four sector packs' recorded scenarios through the loop (a cycle per minute of "
            "scenario time) …")
    reports: dict[str, dict[str, Any]] = {}
    with Runtime.open(settings, loop_clock=clock) as rt:
        for sector in available_sectors():
            scenario = load_scenario(sector)
            run = replay_sector(rt, clock, scenario)
            reports[sector] = sector_report(rt, scenario, run)
            if not as_json:
                print_sector(sector, reports[sector])
        receipts_cp = rt.ledger.checkpoint("receipts")
        audit_cp = rt.ledger.checkpoint("audit")
        receipts = rt.ledger.verify("receipts")
        audit = rt.ledger.verify("audit")
    ok = receipts.ok and audit.ok
    elapsed = time.perf_counter() - started
    if as_json:
        print_json({
            "data_dir": str(data_dir),
            "sectors": {s: {k: r[k] for k in ("cycles", "patterns", "proposals", "promoted", "rejected", "held",
                                               "current_snapshot")} for s, r in reports.items()},
            "ledger": {**receipts.to_json(), "checkpoint": receipts_cp.note, "audit": audit.to_json()},
            "elapsed_s": round(elapsed, 2),
        })
        return 0 if ok else 1
    say("\n[bold]Summary[/bold]")
    table(None, ["sector", "cycles", "patterns", "proposals", "promoted", "rejected", "held", "current snapshot"],
          [[s, r["cycles"], r["patterns"], r["proposals"], r["promoted"], r["rejected"], r["held"],
            r["current_snapshot"][:16]] for s, r in reports.items()])
    verdict = "[green]VERIFIED[/green]" if ok else "[red]FAILED[/red]"
    say(f"\nLedger: {verdict} — receipts {receipts.verified_count}/{receipts.total_count} entries, audit "
        f"{audit.verified_count}/{audit.total_count}; every id, signature, parent link, timestamp, Merkle node "
        "and checkpoint recomputed.")
    say(f"Receipts checkpoint: tree size {receipts_cp.tree_size}, root {receipts_cp.root_hash.hex()} "
        f"(signed note, origin {receipts_cp.note.splitlines()[0]})")
    say(f"Audit checkpoint: tree size {audit_cp.tree_size}, root {audit_cp.root_hash.hex()}")
    cli = _command_name()
    say(f"\nDone in {elapsed:.1f} s. Inspect it: KNHK_DATA_DIR={data_dir} {cli} receipts verify; "
        f"KNHK_DATA_DIR={data_dir} {cli} sigma lineage --sector finance; "
        f"KNHK_DATA_DIR={data_dir} {cli} proposals list")
    return 0 if ok else 1
