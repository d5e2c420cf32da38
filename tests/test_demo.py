"""``knhk demo`` end to end, as a new user runs it, then inspected with the CLI and tampered with.

The demo replays the four bundled scenarios through the loop on a fresh embedded store. This test checks the
documented JSON shape, the facts each scenario is there to show (read back from the store it leaves behind),
that the ledger verifies and the lineage shows the promoted chain, and that flipping one byte of one stored
receipt (after dropping the append-only triggers, as an attacker with file access would) makes
``knhk receipts verify`` exit 1 naming that entry.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from knhk.app.runtime import Runtime
from knhk.config import Settings

KNHK = str(Path(sys.executable).with_name("knhk"))
SECTORS = ("finance", "healthcare", "logistics", "manufacturing")


def knhk(*args: str, data: Path | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNHK_")}
    if data is not None:
        env["KNHK_DATA_DIR"] = str(data)
    return subprocess.run([KNHK, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("demo")
    data = root / "store"
    done = knhk("demo", "--json", "--data-dir", str(data), cwd=root)
    assert done.returncode == 0, done.stderr
    return data, orjson.loads(done.stdout)


def test_report_has_the_documented_shape(demo: tuple[Path, dict[str, Any]]) -> None:
    data, report = demo
    assert report["data_dir"] == str(data)
    assert sorted(report["sectors"]) == list(SECTORS)
    for sector, summary in report["sectors"].items():
        assert {"cycles", "patterns", "proposals", "promoted", "rejected", "held", "current_snapshot"} <= set(summary)
        assert summary["cycles"] == 16, sector
        assert summary["held"] == 0, sector
        assert len(summary["current_snapshot"]) == 64
    assert {s: (r["promoted"], r["rejected"]) for s, r in report["sectors"].items()} == {
        "finance": (2, 0), "healthcare": (1, 1), "logistics": (1, 0), "manufacturing": (2, 0)}
    ledger = report["ledger"]
    assert ledger["ok"] is True
    assert ledger["verified_count"] == ledger["total_count"] == ledger["tree_size"] > 0
    assert (ledger["signature_failures"], ledger["chain_breaks"], ledger["retrocausation_violations"]) == (0, 0, 0)
    assert ledger["checkpoint_consistent"] is True
    # one standard, one major and one emergency change, each promoted, its class in every one of its receipts
    changes = {c["change_class"]: c for c in report["change_classes"]}
    assert sorted(changes) == ["emergency", "major", "standard"]
    assert {c["status"] for c in changes.values()} == {"promoted"}
    assert {r["change_class"] for r in changes["major"]["receipts"]} == {"major"}
    assert "approval.recorded" not in {r["kind"] for r in changes["standard"]["receipts"]}
    assert "proposal.reviewed" in {r["kind"] for r in changes["emergency"]["receipts"]}
    assert all(r["change_class"] for c in changes.values() for r in c["receipts"])


def proposals_by_pattern(rt: Runtime, sector: str) -> dict[str, tuple[Any, Any]]:
    return {p.pattern or "": (p, s) for p, s in rt.proposals.find(sector=sector, limit=100)}


def test_scenario_facts(demo: tuple[Path, dict[str, Any]]) -> None:
    data, report = demo
    with Runtime.open(Settings(data_dir=data)) as rt:
        # finance: refund.issued promoted only after two people, one from compliance, approved it
        fin = proposals_by_pattern(rt, "finance")
        refund, status = fin["schema_drift:refund.issued"]
        assert status.status == "promoted"
        approvals = rt.proposals.approvals(refund.id)
        assert len({a["subject"] for a in approvals}) == 2
        assert {a["sector"] for a in approvals} == {"finance", "compliance"}
        validations = rt.proposals.validations(refund.id)
        assert validations[0]["outcome"] == "held"
        assert validations[-1]["outcome"] == "approved"
        promoted = [e for e in rt.ledger.entries("receipts", kind="snapshot.promoted", sector="finance", limit=100)
                    if e.fields["subject"] == refund.candidate_id]
        recorded = [e for e in rt.ledger.entries("receipts", kind="approval.recorded", sector="finance", limit=100)
                    if e.fields["subject"] == refund.id]
        assert len(promoted) == 1
        assert len(recorded) == 2
        assert promoted[0].seq > max(e.seq for e in recorded)
        _rate, status = fin["high_frequency:payment.created"]
        assert status.status == "promoted"
        guards = [g for g in rt.registry.current_schema("finance").guards if g.kind == "rate_limit"]
        assert [(g.event_type, g.ticks) for g in guards] == [("payment.created", 1)]
        # healthcare: lab.result drift rejected by Q2, SoD refusal recorded, patient.discharged promoted
        hc = proposals_by_pattern(rt, "healthcare")
        lab, status = hc["schema_drift:lab.result"]
        assert status.status == "rejected"
        last = rt.proposals.validations(lab.id)[-1]["report"]
        assert last["failed_stage"] == "invariants"
        assert "Q2" in last["reason"]
        assert hc["schema_drift:patient.discharged"][1].status == "promoted"
        refused = rt.ledger.entries("receipts", kind="approval.refused", sector="healthcare", limit=100)
        assert len(refused) == 1
        assert "HIPAA-SOD-001" in refused[0].fields["reason"]
        denied = [e for e in rt.audit.events(limit=1000) if e.outcome == "denied"]
        assert [e.metadata.get("refusal_receipt") for e in denied] == [refused[0].id]
        # manufacturing: the defect-rate guard violation is receipted
        violations = rt.ledger.entries("receipts", kind="guard.violated", sector="manufacturing", limit=100)
        assert any("ISO9001-QUALITY-001" in e.fields["reason"] and "0.0042" in e.fields["reason"] for e in violations)
        # logistics: customs.cleared promoted with a LOG-WINDOW-001 warning (Saturday night)
        log = proposals_by_pattern(rt, "logistics")
        customs, status = log["schema_drift:customs.cleared"]
        assert status.status == "promoted"
        warnings = rt.proposals.validations(customs.id)[-1]["report"]["warnings"]
        assert len(warnings) == 1
        assert warnings[0].startswith("LOG-WINDOW-001 (warning)")
        for sector in SECTORS:
            current = rt.registry.current(sector)
            assert current is not None
            assert current.id == report["sectors"][sector]["current_snapshot"]


def test_cli_verifies_the_ledger_and_shows_lineage_then_detects_tampering(
        demo: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    data, report = demo
    verified = knhk("receipts", "verify", "--json", data=data, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert orjson.loads(verified.stdout)["ok"] is True
    lineage = knhk("sigma", "lineage", "--sector", "finance", "--json", data=data, cwd=tmp_path)
    assert lineage.returncode == 0, lineage.stderr
    chain = orjson.loads(lineage.stdout)
    assert [r["action"] for r in chain] == ["promote", "promote", "root"]
    assert chain[0]["id"] == report["sectors"]["finance"]["current_snapshot"]
    assert [r["parent"] for r in chain[:-1]] == [r["id"] for r in chain[1:]]
    assert all(r["proposal_id"] for r in chain[:-1])

    with sqlite3.connect(data / "knhk.db") as conn:
        triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger' "
                                               "AND tbl_name='ledger_entries'")]
        for name in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        seq = 42
        (payload,) = conn.execute("SELECT payload FROM ledger_entries WHERE log='receipts' AND seq=?",
                                  (seq,)).fetchone()
        tampered = bytearray(payload)
        i = bytes(tampered).index(b'"kind":"') + 9
        tampered[i] ^= 0x01
        conn.execute("UPDATE ledger_entries SET payload=? WHERE log='receipts' AND seq=?", (bytes(tampered), seq))
    broken = knhk("receipts", "verify", "--json", data=data, cwd=tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    result = orjson.loads(broken.stdout)
    assert result["ok"] is False
    assert result["first_failure"]["seq"] == seq
    # the entry itself fails (id, signature, columns); its successor's parent link no longer matches it
    assert {f["seq"] for f in result["failures"] if f["category"] in ("chain", "signature", "row")} == {seq, seq + 1}
    assert result["signature_failures"] == 1
    text = knhk("receipts", "verify", data=data, cwd=tmp_path)
    assert text.returncode == 1
    assert f"first failure at seq {seq}" in text.stdout
