"""The loop's command line (SPEC §13) as a user runs it: ``knhk`` in a subprocess with ``KNHK_DATA_DIR``.

Exit codes: 0 ok, 1 rejected / integrity / conflict, 2 usage. Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from knhk.app.runtime import Runtime
from knhk.config import Settings

KNHK = str(Path(sys.executable).with_name("knhk"))


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.cwd = tmp_path

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KNHK_")}
        env["KNHK_DATA_DIR"] = str(self.data)
        return subprocess.run([KNHK, *args], input=stdin.decode() if stdin is not None else None, env=env,
                              cwd=self.cwd, capture_output=True, text=True, timeout=120, check=False)

    def ok(self, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return orjson.loads(done.stdout) if "--json" in args else done.stdout

    def fails(self, code: int, *args: str, stdin: bytes | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        err = done.stderr.strip()
        assert len(err.splitlines()) == 1, err
        assert "Traceback" not in done.stderr
        return err

    def stored(self) -> int:
        with Runtime.open(Settings(data_dir=self.data)) as rt:
            return rt.reader.count()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def line(event_type: str, sector: str, value: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"event_type": event_type, "sector": sector, "value": value, **extra})


def write(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def maintenance(n: int) -> list[bytes]:
    return [line("maintenance.completed", "manufacturing", {"machine_id": f"m{i}", "technician": "t"}, id=f"mc-{i}")
            for i in range(n)]


def test_ingest_counts_and_is_idempotent(cli: Cli, tmp_path: Path) -> None:
    lines = [line("payment.created", "finance", {"account_id": "a", "transaction_amount": 1_500_000, "currency": "EUR"},
                  id="p-1"),
             b"",
             line("payment.created", "finance", {"account_id": "a", "transaction_amount": 10, "currency": "EUR"}),
             *maintenance(3)]
    path = write(tmp_path / "obs.jsonl", lines)
    first = cli.ok("ingest", path, "--json")
    assert first == {"read": 5, "stored": 5, "duplicates": 0, "non_conforming": 3, "guard_violations": 1,
                     "skewed": 0}
    done = cli.run("ingest", "-", "--json", stdin=b"\n".join(lines[:1] + lines[3:]))
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["duplicates"] == 4
    assert cli.stored() == 5


@pytest.mark.parametrize(("bad_line", "bad", "message"), [
    (1, b"{not json", "line 1 of"),
    (2, line("payment.created", "Finance!", {}), "line 2: sector"),
    (1502, line("x", "finance", {}, colour="red"), "line 1502: unknown field(s) colour"),
    (1502, line("x", "finance", {}, timestamp="2020-01-01T00:00:00Z"), "line 1502: timestamp 2020-01-01T00:00"),
    (1502, line("x", "finance", {}, id="dup"), "line 1502: id 'dup' is also used by line 1"),
])
def test_ingest_refuses_a_bad_line_anywhere_and_stores_nothing(cli: Cli, tmp_path: Path, bad_line: int,
                                                               bad: bytes, message: str) -> None:
    good = [line("x", "finance", {"n": i}) for i in range(1600)]
    good[0] = line("x", "finance", {"n": 0}, id="dup")
    good[bad_line - 1] = bad
    path = write(tmp_path / "obs.jsonl", good)
    err = cli.fails(1 if "also used" in message else 2, "ingest", path)
    assert message in err
    assert cli.stored() == 0


def test_ingest_usage_errors(cli: Cli, tmp_path: Path) -> None:
    assert "cannot read" in cli.fails(2, "ingest", str(tmp_path / "missing.jsonl"))
    assert cli.run("ingest").returncode == 2


def test_cycle_promotes_drift_and_sigma_commands(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ingest", write(tmp_path / "m.jsonl", maintenance(12)), "--json")
    record = cli.ok("cycle", "--sector", "manufacturing", "--json")
    assert record["outcome"] == "success"
    assert (record["counts"]["patterns"], record["counts"]["promotions"]) == (1, 1)
    (proposal,) = record["proposals"]
    assert proposal["outcome"] == "promoted"
    promoted = proposal["snapshot_id"]
    assert cli.ok("cycle", "--sector", "manufacturing", "--json")["counts"]["proposals"] == 0  # idempotent

    current = cli.ok("sigma", "current", "--sector", "manufacturing", "--json")
    assert current["id"] == promoted
    root = current["parent"]
    lineage = cli.ok("sigma", "lineage", "--sector", "manufacturing", "--json")
    assert [(r["id"], r["action"]) for r in lineage] == [(promoted, "promote"), (root, "root")]
    listed = cli.ok("sigma", "list", "--sector", "manufacturing", "--json")["items"]
    assert {i["id"]: i["current"] for i in listed} == {promoted: True, root: False}
    shown = cli.ok("sigma", "show", promoted[:12], "--json")
    assert "maintenance.completed" in shown["event_types"]
    diff = cli.ok("sigma", "diff", root, promoted, "--json")
    assert diff["removed"] == []
    assert any("maintenance.completed" in " ".join(t) for t in diff["added"])
    exported = cli.ok("sigma", "export", promoted, "--format", "ntriples")
    assert len([x for x in exported.splitlines() if x.strip()]) == current["triple_count"]

    moved = cli.ok("sigma", "rollback", "--sector", "manufacturing", "--json")
    assert (moved["snapshot_id"], moved["previous_id"]) == (root, promoted)
    assert "root snapshot" in cli.fails(2, "sigma", "rollback", "--sector", "manufacturing")
    again = cli.ok("sigma", "promote", promoted, "--sector", "manufacturing", "--json")  # its receipt still holds
    assert again["snapshot_id"] == promoted
    assert again["receipt_id"]
    assert cli.ok("sigma", "current", "--sector", "manufacturing", "--json")["id"] == promoted
    assert cli.ok("sigma", "gc", "--min-age-s", "0", "--json") == {"collected": []}  # promoted: kept

    assert "neither a snapshot id nor a prefix" in cli.fails(2, "sigma", "show", "zz")
    assert "no snapshot id starts with" in cli.fails(2, "sigma", "show", "abcdef01")
    assert "unknown sector" in cli.fails(2, "cycle", "--sector", "energy")
    fin_root = cli.ok("sigma", "current", "--sector", "finance", "--json")["id"]
    assert "belongs to sector finance" in cli.fails(2, "sigma", "promote", fin_root, "--sector", "manufacturing")


def test_promote_without_validation_is_rejected(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ingest", write(tmp_path / "r.jsonl", [
        line("refund.issued", "finance", {"account_id": "a", "transaction_amount": 5}) for _ in range(5)]))
    record = cli.ok("cycle", "--sector", "finance", "--json")
    assert record["outcome"] == "partial"
    (held,) = record["proposals"]
    assert held["outcome"] == "held"
    proposal = cli.ok("proposals", "show", held["id"], "--json")
    err = cli.fails(1, "sigma", "promote", proposal["candidate_snapshot_id"], "--sector", "finance")
    assert "validation receipt" in err
    # a held proposal's validation outcome is "held", not "approved": promoting it is refused


def test_proposals_approve_and_reject(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ingest", write(tmp_path / "r.jsonl", [
        line("refund.issued", "finance", {"account_id": "a", "transaction_amount": 5}) for _ in range(5)]
        + [line("patient.discharged", "healthcare", {"patient_id": "p", "ward": "w"}) for _ in range(5)]))
    cli.ok("cycle", "--json")
    (fin,) = cli.ok("proposals", "list", "--sector", "finance", "--status", "held", "--json")
    pid = fin["id"]
    shown = cli.ok("proposals", "show", pid, "--json")
    assert shown["status"] == "held"
    assert shown["validations"][0]["outcome"] == "held"
    alice = ["--approver", "alice@bank.example", "--approver-sector", "finance", "--approver-role", "validator"]
    first = cli.ok("proposals", "approve", pid, *alice, "--json")
    assert first["outcome"] == "held"
    assert "same person twice" in cli.fails(1, "proposals", "approve", pid, *alice)
    carol = ["--approver", "carol@bank.example", "--approver-sector", "compliance", "--approver-role", "validator"]
    second = cli.ok("proposals", "approve", pid, *carol, "--json")
    assert second["outcome"] == "promoted"
    assert cli.ok("sigma", "current", "--sector", "finance", "--json")["id"] == second["promoted_snapshot"]
    assert cli.ok("proposals", "show", pid, "--json")["status"] == "promoted"

    (hc,) = cli.ok("proposals", "list", "--sector", "healthcare", "--status", "held", "--json")
    dave = ["--approver", "dave@hospital.example", "--approver-sector", "healthcare",
            "--approver-role", "doctor", "--approver-role", "billing"]
    assert "HIPAA-SOD-001" in cli.fails(1, "proposals", "approve", hc["id"], *dave)
    erin = ["--approver", "erin@hospital.example", "--approver-sector", "healthcare", "--approver-role", "doctor"]
    rejected = cli.ok("proposals", "reject", hc["id"], *erin, "--comment", "wrong ward codes", "--json")
    assert rejected["outcome"] == "rejected"
    assert "not held" in cli.fails(1, "proposals", "approve", hc["id"], *erin)
    assert "no proposal" in cli.fails(2, "proposals", "show", "prop_nope")
    assert "not held" in cli.fails(1, "proposals", "approve", pid)  # promoted is final (the terminal's user)
    refusals = cli.ok("receipts", "list", "--kind", "approval.refused", "--json")
    assert len(refusals if isinstance(refusals, list) else refusals["items"]) == 4
