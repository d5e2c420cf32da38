"""The receipt-chain-integrity runbook, rehearsed on a real embedded store.

A receipt stored after a backup was taken is rewritten in the SQLite file (as a superuser of the file could:
the append-only trigger dropped first). A live ``knhk serve`` verifying every second then exports
``knhk_receipt_chain_valid{log="receipts"} 0`` and answers ``/health`` with 503; those scraped samples, fed to
``promtool test rules`` with the shipped rules, fire ``KnhkReceiptChainBroken`` for the receipts log only. With
the service stopped, the ``knhk`` lines of the runbook's code blocks run in order, as written there (only the
placeholders SEQ and BACKUP filled in from what the earlier commands printed): verification exits 1 naming the
tampered seq, the backup verifies and is restored, verification passes again — and a restarted service
exports 1, which promtool shows no longer fires.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from docs_refs import ROOT, shell_commands
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typer.testing import CliRunner

from knhk.cli.main import app
from support.serve import KNHK, serve

RUNBOOK = ROOT / "docs" / "runbooks" / "receipt-chain-integrity.md"
RULES = ROOT / "deploy" / "monitoring" / "rules"
TAMPERED = 2
BACKUP_ID = re.compile(r"\b(\d{8}T\d{6}Z-sqlite-[0-9a-f]+)\b")


def knhk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A runbook step as the operator runs it: the real command, its real exit code."""
    return subprocess.run([KNHK, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def prepare(env: dict[str, str], *args: str) -> str:
    """Setting the scene (in this process: faster than a command per step)."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def chain_valid_after_verification(env: dict[str, str], want: float) -> tuple[dict[str, float], httpx.Response]:
    """Run ``knhk serve`` on the store until its verifier has exported ``want`` for the receipts log; return
    the ``knhk_receipt_chain_valid`` samples by log and the answer of ``/health``."""
    with serve({**env, "KNHK_VERIFY_INTERVAL_S": "1", "KNHK_CYCLE_INTERVAL_S": "0"}) as (url, _proc):
        deadline = time.monotonic() + 60
        while True:
            text = httpx.get(f"{url}/metrics", timeout=10).text
            values = {s.labels["log"]: s.value for f in text_string_to_metric_families(text)
                      if f.name == "knhk_receipt_chain_valid" for s in f.samples}
            if values.get("receipts") == want and "audit" in values:
                return values, httpx.get(f"{url}/health", timeout=10)
            assert time.monotonic() < deadline, f"the verifier did not export {want}: {values}"
            time.sleep(0.5)


def promtool_fires(values: dict[str, float], tmp: Path, expected: list[str]) -> None:
    """``promtool test rules``: with these samples held for 5 minutes, KnhkReceiptChainBroken fires for exactly
    the logs in ``expected`` (with the rule's labels and annotations)."""
    rule = next(r for g in yaml.safe_load((RULES / "knhk-alerts.yml").read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "KnhkReceiptChainBroken")
    alerts = [{"exp_labels": {**rule["labels"], "log": log},
               "exp_annotations": {k: v.replace("{{ $labels.log }}", log) for k, v in rule["annotations"].items()}}
              for log in expected]
    test = {"rule_files": [str(RULES / "knhk-recording.yml"), str(RULES / "knhk-alerts.yml")],
            "evaluation_interval": "30s",
            "tests": [{"interval": "30s",
                       "input_series": [{"series": f'knhk_receipt_chain_valid{{log="{log}"}}', "values": f"{v:g}x10"}
                                        for log, v in sorted(values.items())],
                       "alert_rule_test": [{"eval_time": "1m", "alertname": "KnhkReceiptChainBroken",
                                            "exp_alerts": alerts}]}]}
    path = tmp / f"rehearsal-{len(expected)}.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/test-tools.txt)"
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def tamper(db: Path, seq: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER ledger_entries_no_update")
        changed = conn.execute(
            "UPDATE ledger_entries SET payload = CAST(REPLACE(CAST(payload AS TEXT), '\"triple_count\":', "
            "'\"triple_count\":9') AS BLOB) WHERE log='receipts' AND seq=?", (seq,)).rowcount
        assert changed == 1
    finally:
        conn.close()


def test_the_receipt_chain_runbook_finds_the_bad_seq_and_restores(tmp_path: Path) -> None:
    env = {"KNHK_DATA_DIR": str(tmp_path / "data")}
    for args in (["init"], ["backup", "create", "--actor", "ops@example.org"],
                 ["audit", "append", "--actor", "ops@example.org", "--action", "deploy.completed",
                  "--resource", "svc/knhk", "--outcome", "success"]):
        prepare(env, *args)
    tamper(tmp_path / "data" / "knhk.db", TAMPERED)

    # the alert: what the service exports after its verification, through the shipped rules
    values, health = chain_valid_after_verification(env, 0.0)
    assert values == {"receipts": 0.0, "audit": 1.0}
    assert health.status_code == 503
    assert health.json()["dependencies"]["ledger"]["status"] == "failed_verification"
    promtool_fires(values, tmp_path, ["receipts"])

    # the runbook, in order, with the service stopped (serve() has ended it)
    steps = shell_commands(RUNBOOK)
    paths = [" ".join(s.split()[1:3]) for s in steps]
    assert paths == ["receipts verify", "receipts list", "receipts show", "backup list", "backup verify",
                     "backup restore", "receipts verify"], steps
    filled: dict[str, str] = {}
    outputs: list[subprocess.CompletedProcess[str]] = []
    for step in steps:
        args = [filled.get(token, token) for token in step.split()[1:]]
        assert not {"SEQ", "BACKUP"} & set(args), f"{step}: a placeholder no earlier step printed"
        done = knhk(env, *args)
        outputs.append(done)
        if step.startswith("knhk receipts verify") and len(outputs) == 1:
            assert done.returncode == 1, done.stdout + done.stderr
            report: dict[str, Any] = json.loads(done.stdout)
            first = report["logs"]["receipts"]["first_failure"]
            filled["SEQ"] = str(first["seq"])
            assert report["logs"]["audit"]["ok"] is True
        else:
            assert done.returncode == 0, f"{step}: {done.stdout}{done.stderr}"
        if step == "knhk backup list":
            found = BACKUP_ID.findall(done.stdout)
            assert found, done.stdout
            filled["BACKUP"] = found[0]
    assert filled["SEQ"] == str(TAMPERED)  # the first bad seq is the tampered one
    # the restore is in the restored store's audit log
    audit = json.loads(prepare(env, "audit", "list", "--json"))
    assert any(e["action"] == "backup.restored" for e in audit)

    # validation: the restarted service verifies the restored ledger, and the alert no longer fires
    values, health = chain_valid_after_verification(env, 1.0)
    assert values == {"receipts": 1.0, "audit": 1.0}
    assert health.status_code == 200
    promtool_fires(values, tmp_path, [])
