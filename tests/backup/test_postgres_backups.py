"""PostgreSQL backups, for real: pg_dump exports on the shared server, and pgBackRest physical backups with
point-in-time recovery on a private cluster archiving its WAL to a local, encrypted pgBackRest repository.

The PITR test is the seed's procedure run end to end through ``knhk backup``: a full backup, writes A
(observations and the receipts the product appends for them), time T, writes B, a signed checkpoint of the
pre-restore tree, then ``restore --target-time T``: A is present, B absent, both logs verify, and the restored
receipts tree is proven (RFC 9162 consistency proof, re-checked here against the pre-restore signed
checkpoint) to be a prefix of the tree before the restore. It prints the recovery point reached, the time the
restore took and the backup sizes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from backup_support import MARKER, OPERATOR, create_backup, recovery, write

from knhk.app.runtime import Runtime
from knhk.backup import cipher
from knhk.backup.pgurl import url_with
from knhk.config import Settings
from knhk.errors import ConflictError
from knhk.ops.clock import format_rfc3339
from knhk.proof.checkpoint import verify_checkpoint
from knhk.proof.merkle import proves_consistency
from support.pgcluster import PrivateCluster, private_cluster

# RPO bound of point-in-time recovery: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial

FIGURES: dict[str, str] = {}


def _ids(url: str, sql: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {str(r[0]) for r in conn.execute(sql)}


def test_logical_export_verifies_and_restores_by_renaming(pg_url: str, pg_admin_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "backup.key"
    cipher.write_key_file(key_file)
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, db_pool_min=1, db_pool_max=4,
                        backup_key_file=key_file)
    with Runtime.open(settings) as rt:
        a_ids, a_receipts = write(rt, "A", 400)
        started = time.monotonic()
        manifest = create_backup(rt, logical=True)
        FIGURES["pg_dump export (400 observations)"] = f"{time.monotonic() - started:.1f} s, " \
                                                       f"{manifest.files[0].bytes} bytes encrypted"
        b_ids, _ = write(rt, "B", 100)
        rt.ledger.checkpoint("receipts")
    assert manifest.kind == "pg_dump"
    assert manifest.exact
    stored = (settings.resolved_backup_dir / manifest.id / "data.pgdump.enc").read_bytes()
    assert MARKER.encode() not in stored
    result = recovery(settings).verify_backup(OPERATOR, manifest.id)
    assert result.ok, result.problems
    assert result.restored is not None
    assert result.restored.tables == manifest.state.tables
    assert result.logs["receipts"]["live"]["direction"] == "restored-is-prefix"

    with pytest.raises(ConflictError, match="not empty; pass --force"):
        recovery(settings).restore_backup(OPERATOR, manifest.id)
    report = recovery(settings).restore_backup(OPERATOR, manifest.id, force=True)
    kept = report.kept_previous
    try:
        assert kept is not None
        assert report.verification.ok
        obs = _ids(pg_url, "SELECT id FROM observations WHERE sector='finance'")
        assert obs == set(a_ids), "the restored database is not the exported one"
        assert set(a_receipts) <= _ids(pg_url, "SELECT id FROM ledger_entries")
        assert set(b_ids) <= _ids(url_with(pg_url, dbname=kept), "SELECT id FROM observations")
        with Runtime.open(settings) as rt:
            assert rt.ledger.verify("receipts").ok
            assert rt.ledger.verify("audit").ok
    finally:
        if kept is not None:
            with psycopg.connect(pg_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{kept}" WITH (FORCE)')


def _pgbackrest_conf(root: Path, cluster: PrivateCluster) -> Path:
    for sub in ("repo", "log", "lock", "spool"):
        (root / sub).mkdir(parents=True)
        shutil.chown(root / sub, "postgres", "postgres")
    conf = root / "pgbackrest.conf"
    conf.write_text(
        "[global]\n"
        f"repo1-path={root / 'repo'}\nrepo1-retention-full=2\nrepo1-cipher-type=aes-256-cbc\n"
        f"repo1-cipher-pass={os.urandom(24).hex()}\n"
        f"log-path={root / 'log'}\nlock-path={root / 'lock'}\nspool-path={root / 'spool'}\n"
        "log-level-file=off\nstart-fast=y\ncompress-type=none\n\n"
        "[knhk]\n"
        f"pg1-path={cluster.data}\npg1-port={cluster.port}\npg1-socket-path={cluster.root}\n")
    os.chmod(conf, 0o640)
    shutil.chown(conf, "postgres", "postgres")
    return conf


@pytest.fixture
def archiving_cluster(tmp_path: Path) -> Iterator[tuple[PrivateCluster, Settings]]:
    brroot = Path(tempfile.mkdtemp(prefix="knhk-pgbackrest-"))  # the postgres user must reach it
    os.chmod(brroot, 0o755)
    conf = brroot / "pgbackrest.conf"
    archive = f"'pgbackrest --config={conf} --stanza=knhk archive-push %p'"
    try:
        with private_cluster({"wal_level": "replica", "archive_mode": "on", "archive_command": archive,
                              "archive_timeout": "60"}) as cluster:
            _pgbackrest_conf(brroot, cluster)
            url = cluster.create_database("knhk")
            settings = Settings(data_dir=tmp_path / "data", database_url=url, db_pool_min=1, db_pool_max=4,
                                backup_pgbackrest_config=conf, backup_os_user="postgres",
                                backup_pg_data=cluster.data, backup_dir=tmp_path / "backups")
            yield cluster, settings
    finally:
        shutil.rmtree(brroot, ignore_errors=True)


def test_point_in_time_recovery_through_knhk_backup(archiving_cluster: tuple[PrivateCluster, Settings]) -> None:
    _cluster, settings = archiving_cluster
    backups = recovery(settings)
    with Runtime.open(settings) as rt:
        write(rt, "base", 200)
        started = time.monotonic()
        full = create_backup(rt, backup_type="full")
        backup_s = time.monotonic() - started
    assert full.pgbackrest is not None
    assert full.pgbackrest.type == "full"
    assert full.pgbackrest.cipher == "aes-256-cbc"
    repo = Path(str(settings.backup_pgbackrest_config)).parent / "repo"
    assert not any(MARKER.encode() in p.read_bytes() for p in repo.rglob("*") if p.is_file()), \
        "an observation value is readable in the (uncompressed) pgBackRest repository: the cipher is off"

    started = time.monotonic()
    verified = backups.verify_backup(OPERATOR, full.id)
    verify_s = time.monotonic() - started
    assert verified.ok, verified.problems

    # A damaged file in the repository is named by verify.
    victim = max((p for p in (repo / "backup").rglob("*") if p.is_file() and "pg_data/base" in str(p)),
                 key=lambda p: p.stat().st_size)
    saved = victim.read_bytes()
    os.truncate(victim, 100)
    damaged = backups.verify_backup(OPERATOR, full.id)
    victim.write_bytes(saved)
    assert not damaged.ok
    assert any("invalid" in str(p) and victim.name in str(p) for p in damaged.problems), damaged.problems

    with Runtime.open(settings) as rt:
        a_ids, a_receipts = write(rt, "A", 300)
        time.sleep(0.5)
        target_us = rt.clock.now_us()
        time.sleep(0.5)
        b_ids, b_receipts = write(rt, "B", 300)
        pre = rt.ledger.checkpoint("receipts")
        public = rt.keyring.public_key(pre.key_id).public_key
        pre_audit = rt.ledger.tree_size("audit")

    with pytest.raises(ConflictError, match="holds a cluster; pass --force"):
        backups.restore_backup(OPERATOR, None, target_time=format_rfc3339(target_us))
    started = time.monotonic()
    report = backups.restore_backup(OPERATOR, None, target_time=format_rfc3339(target_us), force=True)
    restore_s = time.monotonic() - started
    assert report.backup == full.id
    assert report.verification.ok, report.verification.problems
    assert report.kept_previous is not None

    url = settings.resolved_database_url
    obs = _ids(url, "SELECT id FROM observations")
    assert set(a_ids) <= obs, "writes before the target time are missing"
    assert not set(b_ids) & obs, "writes after the target time were restored"
    receipts = _ids(url, "SELECT id FROM ledger_entries WHERE log='receipts'")
    assert set(a_receipts) <= receipts
    assert not set(b_receipts) & receipts
    with Runtime.open(settings) as rt:
        for log in ("receipts", "audit"):
            assert rt.ledger.verify(log).ok, log
        size = rt.ledger.tree_size("receipts")
        restored_root = rt.ledger.root("receipts", size)
        newest_restored_us = rt.ledger.entries("receipts", descending=True, limit=1)[0].ts_us
        rt.ingestor.ingest_batch([{"id": "after-pitr", "sector": "finance", "event_type": "payment.created",
                                   "value": {"account_id": "x", "transaction_amount": 5}}])
        # the archive goes on after the restore, on the new timeline
        incr = create_backup(rt)
    assert incr.pgbackrest is not None
    # independent check of the product's claim: the restored tree is a prefix of the pre-restore checkpoint
    live = report.verification.logs["receipts"]["live"]
    assert live["direction"] == "restored-is-prefix"
    assert live["checkpoint_size"] == pre.tree_size
    signed = verify_checkpoint(pre.note, public)
    assert size < signed.tree_size
    assert proves_consistency(size, signed.tree_size, restored_root, signed.root_hash,
                              [bytes.fromhex(h) for h in live["proof"]])
    assert report.lost["receipts"] == pre.tree_size - size
    assert report.lost["audit"] <= pre_audit

    rpo_s = (target_us - newest_restored_us) / 1e6
    FIGURES.update({
        "pgBackRest full backup": f"{backup_s:.1f} s; cluster {full.pgbackrest.size} B, stored "
                                  f"{full.pgbackrest.repo_delta} B (aes-256-cbc, uncompressed)",
        "verify of the full backup (scratch restore + checks)": f"{verify_s:.1f} s",
        "PITR restore (restore, recovery, verify, swap, start)": f"{restore_s:.1f} s",
        "PITR data loss at the target time": f"0 of the {len(a_ids)} observations and {len(a_receipts)} receipts "
                                             f"committed before it lost; the {len(b_ids)} observations and "
                                             f"{pre.tree_size - size} receipts after it not restored (by design)",
        "PITR recovery point": f"newest restored receipt {rpo_s * 1000:.0f} ms before the target time (the idle "
                               "gap the test leaves before it)",
        "incremental backup after PITR (new timeline)": f"stored {incr.pgbackrest.repo_delta} B "
                                                        f"({incr.pgbackrest.type})",
    })
    print("\n== PITR figures")
    for name, value in FIGURES.items():
        print(f"   {name}: {value}")
    assert 0 <= rpo_s < 0.5 + 1.0
