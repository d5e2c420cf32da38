"""Retention (SPEC §11): months of observations older than the retention are archived, recorded in the ledger and
dropped whole; archives prove themselves offline. Both backends, real databases, the real ``knhk`` command.

Proves: only whole months older than the retention go (newer ones are kept, rows never leave one by one); each
archive verifies (count, roots, signed manifest, proof bundle of its ``observations.archived`` receipt); a
modified line, a truncated file, an edited manifest and a foreign proof each fail verification naming what is
wrong (exit 1; a file that is no segment file exits 2); receipts and audit only grow and still verify; a receipt
whose evidence was archived reports the segment instead of tampering; PostgreSQL drops no partition whose segment
lacks its ledger entry or holds other than its rows; ingest goes on afterwards, an archived id
is not reused, the DELETE trigger still refuses single rows, and a run repeated changes nothing.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.app.retention import verify_archive
from knhk.config import Settings
from knhk.errors import ConflictError
from knhk.ledger import receipts
from knhk.observations.evidence import check_evidence
from knhk.ops.clock import ManualClock, parse_rfc3339
from knhk.proof.entry import LOGS

KNHK = str(Path(sys.executable).with_name("knhk"))
OPERATOR = local_principal("ops@test", roles=("administrator",))
JAN = parse_rfc3339("2026-01-10T00:00:00Z")
FEB = parse_rfc3339("2026-02-10T00:00:00Z")
APR = parse_rfc3339("2026-04-10T00:00:00Z")
NOW = parse_rfc3339("2026-06-15T00:00:00Z")  # 90 days before: 2026-03-17 — January and February are due


def _payments(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "event_type": "payment.created", "sector": "finance",
             "value": {"account_id": "A-1", "transaction_amount": 10 + i, "currency": "EUR"}} for i in range(n)]


def _knhk(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNHK_")}
    env.update(KNHK_DATABASE_URL=settings.resolved_database_url, KNHK_DATA_DIR=str(settings.data_dir))
    return subprocess.run([KNHK, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def _rewrite_gz(path: Path, edit: Any) -> None:
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(edit(lines))))


@pytest.fixture
def archived(settings: Settings) -> Any:
    clock = ManualClock(JAN)
    app = Application.open(settings, access=LocalAccess(), loop_clock=clock)
    try:
        app.runtime.ingestor.ingest_batch(_payments("jan", 30))
        big = app.runtime.ingestor.ingest({"id": "jan-big", "event_type": "payment.settled", "sector": "finance",
                                           "value": {"account_id": "A-1", "transaction_amount": 5_000_000}})
        clock.set(FEB)
        app.runtime.ingestor.ingest_batch(_payments("feb", 20))
        clock.set(APR)
        app.runtime.ingestor.ingest_batch(_payments("apr", 10))
        yield app, clock, big
    finally:
        app.close()


def test_old_months_are_archived_then_dropped_whole_and_everything_else_stays(
        archived: Any, settings: Settings) -> None:
    app, clock, big = archived
    rt = app.runtime
    guard_receipt = rt.ledger.entry_by_id(big.receipt_ids[0])
    assert guard_receipt.kind == "guard.violated"
    sizes = {log: rt.ledger.tree_size(log) for log in LOGS}

    report = app.archive_observations(OPERATOR, retention_days=90, now_us=NOW)

    done = {a.period: a for a in report.archived if a.count}
    assert sorted(done) == ["2026-01", "2026-02"]
    assert (done["2026-01"].count, done["2026-02"].count) == (31, 20)
    assert all(a.dropped for a in report.archived)
    assert "2026-04" in report.kept
    with rt.db.connection() as conn:
        assert conn.fetchone("SELECT COUNT(*) FROM observations") == (10,)
        assert conn.fetchone("SELECT COUNT(*) FROM observation_ids") == (61,)  # ids stay used
        if rt.db.dialect == "postgresql":
            tables = {r[0] for r in conn.fetchall("SELECT relname FROM pg_class WHERE relname LIKE 'observations_p%'"
                                                  " AND relkind = 'r'")}
            assert "observations_p202601" not in tables
            assert "observations_p202602" not in tables
            assert "observations_p202604" in tables
    # one receipt per archived month, one audit entry for the run; both logs verify
    assert rt.ledger.tree_size("receipts") == sizes["receipts"] + len(report.archived)
    assert rt.ledger.tree_size("audit") == sizes["audit"] + 1
    for log in LOGS:
        assert rt.ledger.verify(log).ok
    # each archive proves itself from its files alone
    for a in done.values():
        result = verify_archive(Path(a.archive))
        assert result.ok, result.problems
        assert result.count == a.count
        assert result.ledger is not None
        assert result.ledger["seq"] == a.ledger_seq
    # the guard receipt's evidence was archived: named, not called tampered
    evidence = check_evidence(rt.ledger, rt.db, "receipts", guard_receipt.seq)
    assert evidence.ok, evidence.message
    assert evidence.archived == {done["2026-01"].segment: 1}
    assert f"segment {done['2026-01'].segment}" in evidence.message
    assert evidence.recomputed_root is None  # no archive directory given: named, not recomputed
    # with the archives at hand (the application passes KNHK_ARCHIVE_DIR) the root is recomputed from them
    full = app.receipt_evidence(OPERATOR, "receipts", guard_receipt.seq)
    assert full.ok, full.message
    assert full.recomputed_root == full.root
    assert "read from the archives" in full.message
    checked, failing = app.verify_evidence(OPERATOR)
    assert failing is None
    assert checked >= 2  # the guard.violated and alert.raised receipts of jan-big

    # ingest goes on; an archived id is never reused; rows still never leave one by one
    clock.set(NOW)
    assert not rt.ingestor.ingest_batch(_payments("jun", 3))[0].duplicate
    with pytest.raises(ConflictError, match="archived after the retention"):
        rt.ingestor.ingest_batch(_payments("jan", 1))
    with pytest.raises(Exception, match="append-only"), rt.db.transaction() as conn:
        conn.execute("DELETE FROM observations WHERE id='apr-1'")
    with rt.db.connection() as conn:
        assert conn.fetchone("SELECT COUNT(*) FROM observations") == (13,)

    # a second run at the same time has nothing to do
    again = app.archive_observations(OPERATOR, retention_days=90, now_us=NOW)
    assert [a for a in again.archived if a.count] == []
    assert app.archived_segments(OPERATOR)[0]["segment"] == done["2026-01"].segment


def test_a_tampered_archive_fails_verification_naming_what_is_wrong(archived: Any, tmp_path: Path) -> None:
    app, _, _ = archived
    report = app.archive_observations(OPERATOR, retention_days=90, now_us=NOW)
    jan = next(a for a in report.archived if a.period == "2026-01")
    source = Path(jan.archive)
    base = source.name.removesuffix(".jsonl.gz")

    def copy(name: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        for suffix in (".jsonl.gz", ".manifest.json", ".proof.json"):
            shutil.copy(source.with_name(base + suffix), where / (base + suffix))
        return where / (base + ".jsonl.gz")

    changed = copy("changed")
    _rewrite_gz(changed, lambda lines: [lines[0], lines[1].replace(b'"transaction_amount":11',
                                                                   b'"transaction_amount":91'), *lines[2:]])
    problems = " | ".join(verify_archive(changed).problems)
    assert "archive file differs from its manifest" in problems
    assert "archive line 2 (observation jan-1" in problems
    assert "was changed" in problems

    dropped = copy("dropped")
    _rewrite_gz(dropped, lambda lines: lines[:-1])
    problems = " | ".join(verify_archive(dropped).problems)
    assert "count: the archive gives 30, the manifest says 31" in problems

    truncated = copy("truncated")
    truncated.write_bytes(truncated.read_bytes()[:-40])
    assert any("truncated" in p for p in verify_archive(truncated).problems)

    edited = copy("edited")
    manifest = edited.with_name(base + ".manifest.json")
    doc = orjson.loads(manifest.read_bytes())
    doc["count"] = 30
    manifest.write_bytes(orjson.dumps(doc))
    problems = " | ".join(verify_archive(edited).problems)
    assert "signature does not verify" in problems
    assert "the ledger entry records manifest SHA-256" in problems

    foreign = copy("foreign")
    feb = next(a for a in report.archived if a.period == "2026-02")
    shutil.copy(Path(feb.archive).with_name(Path(feb.archive).name.removesuffix(".jsonl.gz") + ".proof.json"),
                foreign.with_name(base + ".proof.json"))
    assert any("not the observations.archived entry of" in p for p in verify_archive(foreign).problems)

    # the command: 0 intact (also against the live ledger), 1 tampered with the problems named, 2 no segment file
    settings = app.runtime.settings
    ok = _knhk(settings, "archive", "verify", str(source), "--live", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert orjson.loads(ok.stdout)["ok"] is True
    bad = _knhk(settings, "archive", "verify", str(truncated))
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout
    assert "truncated" in bad.stdout
    assert "Traceback" not in bad.stderr
    stray = tmp_path / "notes.txt"
    stray.write_text("x")
    other = _knhk(settings, "archive", "verify", str(stray))
    assert other.returncode == 2
    assert "none of a segment's files" in other.stderr


def test_knhk_archive_run_from_the_command_line(settings: Settings) -> None:
    app = Application.open(settings, access=LocalAccess())
    try:
        app.runtime.ingestor.ingest_batch(_payments("now", 5))
        now = app.runtime.clock.now_us()
    finally:
        app.close()
    later = "2099-01-01T00:00:00Z"
    dry = _knhk(settings, "archive", "run", "--now", later, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert sum(a["count"] for a in orjson.loads(dry.stdout)["archived"]) == 5
    run = _knhk(settings, "archive", "run", "--retention", "30d", "--now", later, "--json")
    assert run.returncode == 0, run.stderr
    done = [a for a in orjson.loads(run.stdout)["archived"] if a["count"]]
    assert len(done) == 1
    assert done[0]["count"] == 5
    assert _knhk(settings, "archive", "verify", done[0]["archive"]).returncode == 0
    listed = _knhk(settings, "archive", "list", "--json")
    assert [s["count"] for s in orjson.loads(listed.stdout) if s["count"]] == [5]
    assert _knhk(settings, "receipts", "verify").returncode == 0
    bad = _knhk(settings, "archive", "run", "--retention", "ninety")
    assert bad.returncode == 2
    assert "--retention" in bad.stderr
    assert now < parse_rfc3339(later)


def test_postgresql_drops_no_partition_that_is_not_archived_whole(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, db_pool_min=1, db_pool_max=4)
    clock = ManualClock(JAN)
    app = Application.open(settings, access=LocalAccess(), loop_clock=clock)
    rt = app.runtime
    try:
        rt.ingestor.ingest_batch(_payments("jan", 5))
        row = ("observations-2026-01-000000000000", "2026-01", parse_rfc3339("2026-01-01T00:00:00Z"),
               parse_rfc3339("2026-02-01T00:00:00Z"))
        insert = ("INSERT INTO observation_segments (id, period, lo_us, hi_us, count, first_seq, last_seq, merkle_root,"
                  " manifest_sha256, ledger_log, ledger_seq, archive, created_us) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
        with rt.db.connection() as conn:
            first, last = conn.fetchone("SELECT MIN(seq), MAX(seq) FROM observations") or (0, 0)
        # registered, but no observations.archived entry in the ledger

        def register_and_drop(values: tuple[Any, ...]) -> None:
            with rt.db.transaction() as conn:
                conn.execute(insert, values)
                conn.fetchone("SELECT knhk_drop_observation_partition(?)", (row[0],))

        with pytest.raises(Exception, match=r"has no observations\.archived entry"):
            register_and_drop((*row, 5, first, last, "0" * 64, "0" * 64, "receipts", 0, "x", 0))
        # with its entry, but a segment that holds fewer rows than the partition
        entry = rt.ledger.append(receipts.observations_archived(
            segment=row[0], period="2026-01", count=4, first_seq=first, last_seq=last, lo_us=row[2], hi_us=row[3],
            content_root="0" * 64, rows_root="0" * 64, archive_sha256="0" * 64, manifest_sha256="0" * 64))
        with pytest.raises(Exception, match="holds 5 rows"):
            register_and_drop((*row, 4, first, last, "0" * 64, "0" * 64, "receipts", entry.seq, "x", 0))
        with rt.db.connection() as conn:
            assert conn.fetchone("SELECT COUNT(*) FROM observations") == (5,)
            assert conn.fetchone("SELECT COUNT(*) FROM observation_segments") == (0,)
            assert conn.fetchone("SELECT to_regclass('observations_p202601') IS NOT NULL") == (True,)
    finally:
        app.close()
