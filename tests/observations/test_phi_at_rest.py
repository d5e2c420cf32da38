"""PHI at rest (seed HIPAA): the healthcare pack's PHI fields are stored sealed, read back plain, absent from a
raw dump of the store and from a backup, bound to their row, and the key-encryption key rotates without
rewriting any observation or receipt. Both backends."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.app.backup import Recovery
from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.errors import ConfigurationError, IntegrityError
from knhk.ledger.verify import verify_log
from knhk.observations import store as observation_store

CANARY = "PHI-CANARY-7f3a91"
ADMIN = local_principal("phi-admin@test", roles=("administrator",))


def _admissions(n: int, prefix: str = "adm") -> list[dict[str, object]]:
    return [{"id": f"{prefix}-{i}", "sector": "healthcare", "event_type": "patient.admitted",
             "value": {"patient_id": f"{CANARY}-{i}", "priority": 2, "ward": "B"}} for i in range(n)]


def _raw_dump(rt: Runtime) -> bytes:
    """Every byte the database holds for its tables, as an attacker with the files or a dump sees it."""
    if rt.db.dialect == "postgresql":
        return subprocess.run(["pg_dump", "--no-owner", rt.db.url], check=True, capture_output=True).stdout
    path = Path(rt.db.url.removeprefix("sqlite:///"))
    rt.db.close()
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_phi_fields_are_sealed_at_rest_and_read_back_plain(runtime: Runtime) -> None:
    runtime.ingestor.ingest_batch(_admissions(20))
    with runtime.db.connection() as conn:
        stored = conn.fetchone("SELECT value FROM observations WHERE id='adm-3'")
        got = observation_store.get_observation(conn, "adm-3")
    assert stored is not None
    assert CANARY not in str(stored[0])
    assert '"ward":"B"' in str(stored[0])  # fields the pack does not mark as PHI stay readable
    assert got is not None
    assert got.value == {"patient_id": f"{CANARY}-3", "priority": 2, "ward": "B"}
    recent = runtime.reader.recent("healthcare", 50)
    assert {o.value["patient_id"] for o in recent} == {f"{CANARY}-{i}" for i in range(20)}
    assert CANARY.encode() not in _raw_dump(runtime)


def test_a_sealed_value_moved_to_another_row_fails_authentication(settings: Settings) -> None:
    rt = Runtime.open(settings)
    try:
        rt.ingestor.ingest_batch(_admissions(2, "mv"))
        with rt.db.connection() as conn:
            row = conn.fetchone("SELECT value FROM observations WHERE id='mv-0'")
        assert row is not None
        # An attacker with write access copies row mv-0's sealed patient id into a new row of their own.
        moved = {"id": "mv-x", "sector": "healthcare", "event_type": "patient.admitted",
                 "value": {"priority": 1, "ward": "C"}}
        rt.ingestor.ingest_batch([moved])
        token = str(row[0]).split('"patient_id":"')[1].split('"')[0]
        with rt.db.connection() as conn:
            raw = rt.db._sqlite() if rt.db.dialect == "sqlite" else None
            if raw is not None:  # the append-only triggers refuse UPDATE: go around them as an attacker would
                raw.execute("DROP TRIGGER IF EXISTS observations_no_update")
                raw.execute("UPDATE observations SET value=? WHERE id='mv-x'",
                            (f'{{"patient_id":"{token}","priority":1,"ward":"C"}}',))
            else:
                conn.execute("ALTER TABLE observations DISABLE TRIGGER USER")
                conn.execute("UPDATE observations SET value=? WHERE id='mv-x'",
                             (f'{{"patient_id":"{token}","priority":1,"ward":"C"}}',))
                conn.execute("ALTER TABLE observations ENABLE TRIGGER USER")
        with rt.db.connection() as conn, pytest.raises(IntegrityError, match="fails authentication"):
            observation_store.get_observation(conn, "mv-x")
    finally:
        rt.close()


def test_key_rotation_rewraps_data_keys_and_rewrites_nothing_else(settings: Settings) -> None:
    rt = Runtime.open(settings)
    app = Application(rt, LocalAccess())
    try:
        rt.ingestor.ingest_batch(_admissions(10, "rot"))
        with rt.db.connection() as conn:
            before_rows = conn.fetchall("SELECT id, value FROM observations ORDER BY seq")
            before_entries = conn.fetchone("SELECT COUNT(*) FROM ledger_entries WHERE log='receipts'")
        previous, new, rewrapped, retired = app.rotate_phi_key(ADMIN, retire=True, reason="annual rotation")
        assert previous != new
        assert rewrapped == 1
        assert retired == [previous]
        keys_dir = settings.resolved_keys_dir
        assert not (keys_dir / f"phi-{previous}.kek").exists()
        assert (keys_dir / "phi.active").read_text().strip() == new
        with rt.db.connection() as conn:
            assert conn.fetchall("SELECT id, value FROM observations ORDER BY seq") == before_rows
            assert conn.fetchone("SELECT kek_id FROM data_keys")[0] == new  # type: ignore[index]
            entries = conn.fetchone("SELECT COUNT(*) FROM ledger_entries WHERE log='receipts'")
        assert entries == before_entries  # receipts untouched (the rotation itself is audited)
        assert verify_log(rt.db, "audit").ok
        assert verify_log(rt.db, "receipts").ok
    finally:
        rt.close()
    # A new process reads with the new key file only.
    rt = Runtime.open(settings)
    try:
        got = rt.reader.recent("healthcare", 10)
        assert sorted(o.value["patient_id"] for o in got) == sorted(f"{CANARY}-{i}" for i in range(10))
    finally:
        rt.close()


def test_a_missing_key_file_is_named_not_taken_for_corruption(settings: Settings) -> None:
    rt = Runtime.open(settings)
    rt.ingestor.ingest_batch(_admissions(1, "gone"))
    rt.close()
    keys_dir = settings.resolved_keys_dir
    kek_file = next(keys_dir.glob("phi-*.kek"))
    kek_file.rename(keys_dir / "elsewhere.kek")
    with pytest.raises(ConfigurationError, match=r"phi\.active names PHI key .*missing"):
        Runtime.open(settings)


def test_data_keys_cannot_be_deleted(runtime: Runtime) -> None:
    with pytest.raises(Exception, match="DELETE refused"), runtime.db.connection() as conn:
        conn.execute("DELETE FROM data_keys")
    with runtime.db.connection() as conn:
        assert conn.fetchone("SELECT COUNT(*) FROM data_keys") == (1,)


def test_the_key_can_come_from_configuration(settings: Settings) -> None:
    key = "ab" * 32
    configured = settings.model_copy(update={"phi_key": SecretStr(key)})
    rt = Runtime.open(configured)
    try:
        rt.ingestor.ingest_batch(_admissions(1, "env"))
        assert not list(settings.resolved_keys_dir.glob("phi-*.kek"))
    finally:
        rt.close()
    with pytest.raises(ConfigurationError, match=r"wrapped by key .* missing"):
        Runtime.open(settings)  # the key files of keys_dir do not open data wrapped by the configured key
    with pytest.raises(ConfigurationError, match="64 hex digits"):
        Runtime.open(settings.model_copy(update={"phi_key": SecretStr("not-hex")}))


def test_a_backup_carries_phi_sealed_and_restores_readable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", checkpoint_every_entries=1000, checkpoint_every_seconds=3600)
    with Runtime.open(settings) as rt:
        rt.ingestor.ingest_batch(_admissions(5, "bk"))
        backup = Application(rt, LocalAccess()).create_backup(ADMIN)
    files = [p for p in (settings.resolved_backup_dir / backup.id).rglob("*") if p.is_file()]
    assert files
    assert all(CANARY.encode() not in p.read_bytes() for p in files)
    restored = Settings(data_dir=tmp_path / "new", keys_dir=settings.resolved_keys_dir,
                        backup_dir=settings.resolved_backup_dir)
    Recovery(restored, LocalAccess()).restore_backup(ADMIN, backup.id)
    with Runtime.open(restored) as rt:
        assert sorted(o.value["patient_id"] for o in rt.reader.recent("healthcare", 10)) == sorted(
            f"{CANARY}-{i}" for i in range(5))


def _first_start(keys_dir: str, barrier: Any, answers: Any) -> None:
    from knhk.storage.fields import KekRing

    barrier.wait()
    answers.put(KekRing.load(Path(keys_dir)).active)


def test_replicas_starting_at_once_on_an_empty_key_directory_agree_on_one_key(tmp_path: Path) -> None:
    """Seen in the suite: two replicas made a key each, and one then met a data key wrapped by the other's."""
    context = multiprocessing.get_context("fork")
    barrier, answers = context.Barrier(6), context.Queue()
    starts = [context.Process(target=_first_start, args=(str(tmp_path / "keys"), barrier, answers))
              for _ in range(6)]
    for p in starts:
        p.start()
    for p in starts:
        p.join(60)
    assert [p.exitcode for p in starts] == [0] * 6
    active = {answers.get(timeout=5) for _ in starts}
    assert len(active) == 1
    files = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert files == [f"phi-{active.pop()}.kek", "phi.active"]
