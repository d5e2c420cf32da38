"""Backups of the embedded SQLite store, as an operator takes them: ``knhk backup create`` while a live
``knhk serve`` ingests, ``verify`` against the still-running service (a real RFC 9162 consistency proof from
its newer checkpoint), ``restore`` refusing a store in use or holding data, then replacing it and the service
starting on the restored store; encryption at rest with a key file; ``list``."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from backup_support import (
    MARKER,
    OPERATOR,
    cli,
    cli_json,
    create_backup,
    env_for,
    payment,
    receipt_ids,
    recovery,
    sqlite_ids,
    write,
)

from knhk.app.runtime import Runtime
from knhk.backup.cipher import write_key_file
from knhk.config import Settings
from knhk.errors import ConfigurationError, ConflictError
from knhk.identity.local import LocalIssuer
from knhk.proof.merkle import proves_consistency
from support.serve import serve


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", db_pool_min=1, db_pool_max=4, **extra)  # type: ignore[arg-type]


def test_online_backup_under_concurrent_ingest_verifies_and_restores(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    env = env_for(settings)
    with Runtime.open(settings) as rt:
        write(rt, "seed", 200)
    token = LocalIssuer.from_settings(settings).mint(["ingestor"], subject="gateway").token
    acked: list[tuple[float, str]] = []
    stop = threading.Event()
    serve_env = {**env, "KNHK_CHECKPOINT_INTERVAL_S": "1", "KNHK_CYCLE_INTERVAL_S": "0",
                 "KNHK_VERIFY_INTERVAL_S": "0"}

    with serve(serve_env) as (url, _proc):
        def ingest(worker: int) -> None:
            with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
                i = 0
                while not stop.is_set():
                    oid = f"live-{worker}-{i}"
                    r = c.post("/api/v1/observations", json=payment(oid, 2_000_000 if i % 5 == 0 else 10 + i))
                    assert r.status_code == 201, r.text
                    acked.append((time.monotonic(), oid))
                    i += 1

        workers = [threading.Thread(target=ingest, args=(w,)) for w in range(3)]
        for t in workers:
            t.start()
        try:
            time.sleep(1.0)
            started = time.monotonic()
            created = cli_json(["backup", "create"], env)
            finished = time.monotonic()
            time.sleep(1.5)  # the service goes on writing and checkpointing after the backup
            verify_started = time.monotonic()
            verified = recovery(settings).verify_backup(OPERATOR, created["id"]).to_json()
            verify_s = time.monotonic() - verify_started
            with pytest.raises(ConflictError, match="in use by another process"):
                recovery(settings).restore_backup(OPERATOR, created["id"], force=True)
        finally:
            stop.set()
            for t in workers:
                t.join()

    before = {oid for at, oid in acked if at < started}
    after = {oid for at, oid in acked if at > finished}
    assert len(before) > 20, len(before)
    assert len(after) > 20, len(after)
    backup_file = settings.resolved_backup_dir / created["id"] / "data.sqlite"
    in_backup = sqlite_ids(backup_file)
    assert before <= in_backup, "an observation acknowledged before the backup started is missing from it"
    assert not after <= in_backup
    manifest = created["state"]
    assert manifest["tables"]["observations"] == len(in_backup)
    assert verified["ok"], verified["problems"]
    assert verified["tables"] == manifest["tables"]
    for log in ("receipts", "audit"):
        info = verified["logs"][log]
        assert info["verified"]
        assert info["tree_size"] == manifest["logs"][log]["tree_size"]
    # the service kept checkpointing: the receipts log was proven a prefix of its newer checkpoint
    live = verified["logs"]["receipts"]["live"]
    assert live["direction"] == "restored-is-prefix", live
    assert live["checkpoint_size"] > manifest["logs"]["receipts"]["tree_size"], live
    with Runtime.open(settings) as rt:
        head_size = verified["logs"]["receipts"]["tree_size"]
        assert proves_consistency(head_size, live["checkpoint_size"], rt.ledger.root("receipts", head_size),
                                  rt.ledger.root("receipts", live["checkpoint_size"]),
                                  [bytes.fromhex(h) for h in live["proof"]])

    # The service is stopped: the restore replaces the store (previous one kept) and the service starts on it.
    live_db = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    pre_restore = sqlite_ids(live_db)
    restore_started = time.monotonic()
    report = cli_json(["backup", "restore", created["id"], "--force"], env)
    restore_s = time.monotonic() - restore_started
    print(f"\n== SQLite backup under ingest: {len(in_backup)} observations, "
          f"{manifest['logs']['receipts']['tree_size']} receipts, {created['files'][0]['bytes']} bytes; "
          f"create (CLI, while 3 clients ingest) {finished - started:.1f} s, verify {verify_s:.2f} s, "
          f"restore (CLI) {restore_s:.1f} s")
    assert report["restored"]
    assert report["kept_previous"]
    assert sqlite_ids(live_db) == in_backup
    assert sqlite_ids(Path(report["kept_previous"])) == pre_restore
    assert receipt_ids(live_db) >= receipt_ids(backup_file)
    with Runtime.open(settings) as rt:  # the product works on the restored store
        assert rt.ingestor.ingest(payment("after-restore", 5)).observation.seq is not None
        for log in ("receipts", "audit"):
            assert rt.ledger.verify(log).ok
    # the restore is in the restored store's audit log, so the backup still verifies against it
    assert recovery(settings).verify_backup(OPERATOR, created["id"]).ok


def test_restore_refuses_a_store_with_data_without_force(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    env = env_for(settings)
    with Runtime.open(settings) as rt:
        write(rt, "a", 20)
        backup = create_backup(rt)
        write(rt, "b", 20)
    live_db = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    done = cli(["backup", "restore", backup.id], env)
    assert done.returncode == 1
    assert "is not empty; pass --force" in done.stderr, done.stderr
    assert len(sqlite_ids(live_db)) == 40, "a refused restore changed the store"
    # onto an empty location (a new machine) no --force is needed
    fresh = {**env, "KNHK_DATA_DIR": str(tmp_path / "new"), "KNHK_DATABASE_URL": f"sqlite:///{tmp_path}/new/knhk.db"}
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "keys").symlink_to(settings.resolved_keys_dir)
    report = cli_json(["backup", "restore", str(settings.resolved_backup_dir / backup.id)], fresh)
    assert report["restored"]
    assert report["kept_previous"] is None
    assert report["verification"]["live"].startswith("no running store")
    assert {i for i in sqlite_ids(tmp_path / "new" / "knhk.db")} == {f"a-{i}" for i in range(20)}


def test_encrypted_backup_holds_no_plaintext_and_needs_its_key(tmp_path: Path) -> None:
    key_file = tmp_path / "backup.key"
    settings = _settings(tmp_path, backup_key_file=key_file)
    env = env_for(settings)
    made = cli(["backup", "keygen", str(key_file)], env)
    assert made.returncode == 0, made.stderr
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigurationError, match="never overwritten"):
        write_key_file(key_file)
    plain_settings = _settings(tmp_path)
    with Runtime.open(settings) as rt:
        write(rt, "secret", 50)
        sealed = create_backup(rt)
    with Runtime.open(plain_settings) as rt:  # the same store, backed up without a key
        plain = create_backup(rt)
    assert sealed.encryption is not None
    assert sealed.encryption.cipher == "AES-256-GCM"
    assert plain.encryption is None
    root = settings.resolved_backup_dir
    assert MARKER.encode() in (root / plain.id / "data.sqlite").read_bytes()  # the control: it is findable
    stored = (root / sealed.id / "data.sqlite.enc").read_bytes()
    assert MARKER.encode() not in stored
    assert b"secret-1" not in stored
    assert b"SQLite format" not in stored
    assert recovery(settings).verify_backup(OPERATOR, sealed.id).ok

    no_key = cli(["backup", "verify", sealed.id], {**env, "KNHK_BACKUP_KEY_FILE": ""})
    assert no_key.returncode == 2
    assert f"encrypted with backup key {sealed.encryption.key_id}" in no_key.stderr, no_key.stderr
    other = tmp_path / "other.key"
    write_key_file(other)
    wrong = recovery(_settings(tmp_path, backup_key_file=other)).verify_backup(OPERATOR, sealed.id)
    assert not wrong.ok
    assert "the configured key is" in str(wrong.problems[0])
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigurationError, match="accessible to other users"):
        recovery(settings).verify_backup(OPERATOR, sealed.id)

    listed = recovery(plain_settings).list_backups(OPERATOR)
    assert [(r["id"], r["encrypted"]) for r in listed] == sorted([(sealed.id, True), (plain.id, False)], reverse=True)


def test_latest_names_the_newest_complete_backup(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    env = env_for(settings)
    done = cli(["backup", "verify", "latest"], env)
    assert done.returncode != 0
    assert "no complete backup in" in done.stderr, done.stderr
    with Runtime.open(settings) as rt:
        write(rt, "a", 5)
        create_backup(rt)
        write(rt, "b", 5)
        newest = create_backup(rt)
    # a newer directory without a manifest (an interrupted copy) is passed over, not verified
    (settings.resolved_backup_dir / "zzzz-incomplete").mkdir()
    report = cli_json(["backup", "verify", "latest"], env)
    assert report["backup"] == newest.id
    assert report["ok"]
    assert report["tables"]["observations"] == 10
