"""``knhk demo``: the main job, on a fresh embedded store — the replay is :mod:`knhk.app.demo`; this module
prints what it found, sector by sector (patterns, each proposal's fate, refused approvals, guard violations and
alerts, the snapshot lineage) and the ledger verdict with the checkpoint roots.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from knhk.app import demo
from knhk.cli.output import print_json, say, table
from knhk.config import Settings
from knhk.errors import UsageError


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
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="knhk-demo-"))
    elif data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise UsageError(f"knhk demo builds a fresh store, and {data_dir} is not an empty directory: name a new"
                         " or empty one with --data-dir (or unset KNHK_DATA_DIR for a temporary one)")
    if not as_json:
        say(f"KNHK demo: a fresh embedded store in {data_dir}")
        say("Replaying the four sector packs' recorded scenarios through the loop (a cycle per minute of "
            "scenario time) …")
    done = demo.run(data_dir, on_sector=None if as_json else print_sector)
    receipts, audit = done.receipts, done.audit
    receipts_cp, audit_cp = done.receipts_checkpoint, done.audit_checkpoint
    if as_json:
        print_json({
            "data_dir": str(data_dir),
            "sectors": {s: {k: r[k] for k in ("cycles", "patterns", "proposals", "promoted", "rejected", "held",
                                               "current_snapshot")} for s, r in done.reports.items()},
            "ledger": {**receipts.to_json(), "checkpoint": receipts_cp.note, "audit": audit.to_json()},
            "change_classes": done.changes,
            "elapsed_s": round(done.elapsed_s, 2),
        })
        return 0 if done.ok else 1
    say("\n[bold]Summary[/bold]")
    table(None, ["sector", "cycles", "patterns", "proposals", "promoted", "rejected", "held", "current snapshot"],
          [[s, r["cycles"], r["patterns"], r["proposals"], r["promoted"], r["rejected"], r["held"],
            r["current_snapshot"][:16]] for s, r in done.reports.items()])
    say("\n[bold]Change classes[/bold] (three people's changes after the replays; docs/change-governance.md)")
    for c in done.changes:
        say(f"  {c['change_class']:<9} {c['sector']:<13} {c['proposal_id'][:16]}… {c['status']}: {c['story']}")
        say(f"            why: {c['class_reason']}")
        say("            receipts: " + ", ".join(f"#{r['seq']} {r['kind']} {r['outcome']} ({r['change_class']})"
                                              for r in c["receipts"]))
    verdict = "[green]VERIFIED[/green]" if done.ok else "[red]FAILED[/red]"
    say(f"\nLedger: {verdict} — receipts {receipts.verified_count}/{receipts.total_count} entries, audit "
        f"{audit.verified_count}/{audit.total_count}; every id, signature, parent link, timestamp, Merkle node "
        "and checkpoint recomputed.")
    say(f"Receipts checkpoint: tree size {receipts_cp.tree_size}, root {receipts_cp.root_hash.hex()} "
        f"(signed note, origin {receipts_cp.note.splitlines()[0]})")
    say(f"Audit checkpoint: tree size {audit_cp.tree_size}, root {audit_cp.root_hash.hex()}")
    cli = _command_name()
    say(f"\nDone in {done.elapsed_s:.1f} s. Inspect it: KNHK_DATA_DIR={data_dir} {cli} receipts verify; "
        f"KNHK_DATA_DIR={data_dir} {cli} sigma lineage --sector finance; "
        f"KNHK_DATA_DIR={data_dir} {cli} proposals list")
    code_file = Settings(data_dir=data_dir).console_code_file
    say(f"Operator console: KNHK_DATA_DIR={data_dir} {cli} serve, then open http://127.0.0.1:8080/console/ and sign"
        f" in with the code in {code_file} (created by the first sign-in page)")
    return 0 if done.ok else 1
