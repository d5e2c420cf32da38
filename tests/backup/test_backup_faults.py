"""Damaged backups and interrupted restores.

Each corruption a disk, a copy or an attacker can cause is refused with a message naming what is wrong — and
a restore of a damaged backup changes nothing: a flipped byte or a truncation of the data file, a missing
file, an edited, truncated or missing manifest, an encrypted chunk altered or cut off at a chunk boundary
(with the file digests rewritten to match, so the cipher itself must catch it), a ledger entry rewritten
inside the data file and a deleted row (all digests rewritten), and an internally valid backup of another
installation. A ``knhk backup restore`` SIGKILLed at moments spread over its run always leaves the target
either exactly as it was or fully restored, with the previous store kept.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from backup_support import KNHK, OPERATOR, create_backup, env_for, recovery, sqlite_ids, write

from knhk.app.runtime import Runtime
from knhk.backup import cipher
from knhk.backup.manifest import MANIFEST_NAME, Manifest
from knhk.backup.repository import digest_file
from knhk.config import Settings
from knhk.errors import IntegrityError


def _rewrite_manifest(backup: Path, change: Callable[[dict[str, object]], None]) -> None:
    doc = orjson.loads((backup / MANIFEST_NAME).read_bytes())
    doc.pop("digest")
    change(doc)
    (backup / MANIFEST_NAME).write_bytes(Manifest.model_validate(doc).to_bytes())


def _refresh_digests(backup: Path, *, content_too: bool) -> None:
    """What an attacker who can write the backup does after changing its data: make the manifest agree."""
    def change(doc: dict[str, object]) -> None:
        files = doc["files"]
        assert isinstance(files, list)
        stored = digest_file(backup / files[0]["name"])
        files[0] = stored.model_dump()
        if content_too:
            doc["content"] = stored.model_dump()
    _rewrite_manifest(backup, change)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _tamper_sqlite(backup: Path, sql: list[str]) -> None:
    conn = sqlite3.connect(backup / "data.sqlite")
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    _refresh_digests(backup, content_too=True)


CASES: dict[str, tuple[bool, Callable[[Path], None], str]] = {
    # name: (encrypted backup?, corruption, what the message must say)
    "flipped byte": (False, lambda b: _flip(b / "data.sqlite", 50_000), "data.sqlite: corrupted (SHA-256"),
    "truncated file": (False, lambda b: os.truncate(b / "data.sqlite", 40_960), "data.sqlite: truncated (40960 of"),
    "missing file": (False, lambda b: (b / "data.sqlite").unlink(), "data.sqlite: missing from the backup"),
    "edited manifest": (False, lambda b: (b / MANIFEST_NAME).write_bytes(
        (b / MANIFEST_NAME).read_bytes().replace(b'"observations": 5', b'"observations": 4', 1)),
        "manifest.json was altered"),
    "truncated manifest": (False, lambda b: os.truncate(b / MANIFEST_NAME, 200),
                           "manifest.json is not JSON (truncated or corrupted?)"),
    "missing manifest": (False, lambda b: (b / MANIFEST_NAME).unlink(), "has no manifest.json"),
    "altered ciphertext": (True, lambda b: (_flip(b / "data.sqlite.enc", cipher.HEADER_BYTES + 1_500_000),
                                            _refresh_digests(b, content_too=False)),
                           "data.sqlite.enc: encrypted chunk 1 fails authentication"),
    "ciphertext cut at a chunk boundary": (True, lambda b: (
        os.truncate(b / "data.sqlite.enc", cipher.HEADER_BYTES + cipher.CHUNK_BYTES + cipher.TAG_BYTES),
        _refresh_digests(b, content_too=False)), "data.sqlite.enc is truncated: it ends after chunk 0"),
    "rewritten ledger entry": (False, lambda b: _tamper_sqlite(b, [
        "DROP TRIGGER ledger_entries_no_update",
        "UPDATE ledger_entries SET payload = CAST(REPLACE(CAST(payload AS TEXT), '\"violated\"', '\"ok\"') AS BLOB) "
        "WHERE log='receipts' AND seq = (SELECT MIN(seq) FROM ledger_entries WHERE kind='guard.violated')"]),
        "log receipts: ledger verification failed: entry"),
    "deleted observation": (False, lambda b: _tamper_sqlite(b, [
        "DROP TRIGGER observations_no_delete", "DELETE FROM observations WHERE id='bulk-7'"]),
        "table observations: 4999 rows restored, manifest says 5000"),
}


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[bool, str]]:
    root = tmp_path_factory.mktemp("faults")
    key_file = root / "backup.key"
    cipher.write_key_file(key_file)
    settings = Settings(data_dir=root / "data", db_pool_min=1, db_pool_max=4, backup_key_file=key_file)
    plain_settings = settings.model_copy(update={"backup_key_file": None})
    with Runtime.open(settings) as rt:
        write(rt, "bulk", 5000)
        ids = {True: create_backup(rt).id}
    with Runtime.open(plain_settings) as rt:  # the same store, backed up without a key
        ids[False] = create_backup(rt).id
    return settings, ids


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_backup_is_refused_naming_the_damage(case: str, installation: tuple[Settings, dict[bool, str]],
                                                     tmp_path: Path) -> None:
    settings, ids = installation
    encrypted, corrupt, message = CASES[case]
    backup = tmp_path / ids[encrypted]
    shutil.copytree(settings.resolved_backup_dir / ids[encrypted], backup)
    corrupt(backup)
    live_db = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    before = digest_file(live_db)
    backups = recovery(settings)
    if "manifest" in case:  # the manifest itself is unusable: refused before anything is read
        with pytest.raises(IntegrityError, match=re.escape(message)):
            backups.verify_backup(OPERATOR, str(backup))
    else:
        result = backups.verify_backup(OPERATOR, str(backup))
        assert not result.ok
        assert any(message in str(p) for p in result.problems), result.problems
    with pytest.raises(IntegrityError, match=r"failed verification; nothing was restored|manifest"):
        backups.restore_backup(OPERATOR, str(backup), force=True)
    assert digest_file(live_db) == before, "a refused restore changed the live store"


def test_backup_of_another_installation_is_not_consistent_with_this_one(
        installation: tuple[Settings, dict[bool, str]], tmp_path: Path) -> None:
    settings, _ = installation
    other = Settings(data_dir=tmp_path / "other", db_pool_min=1, db_pool_max=2)
    with Runtime.open(other) as rt:
        write(rt, "bulk", 50)
        foreign = create_backup(rt)
    result = recovery(settings).verify_backup(OPERATOR, str(other.resolved_backup_dir / foreign.id))
    problems = [str(p) for p in result.problems]
    assert not result.ok
    assert any("which the trusted keyring lacks" in p for p in problems), problems
    assert any("not recorded" in p for p in problems), problems
    assert recovery(other).verify_backup(OPERATOR, foreign.id).ok  # against its own installation it is fine


def _state(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        obs = conn.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
        entries = conn.execute("SELECT COUNT(*) FROM ledger_entries WHERE log='receipts'").fetchone()[0]
    finally:
        conn.close()
    return int(obs), int(entries)


def test_restore_killed_at_any_moment_leaves_the_old_or_the_new_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", db_pool_min=1, db_pool_max=4)
    env = {**os.environ, **env_for(settings), "KNHK_LOG_LEVEL": "WARNING"}
    with Runtime.open(settings) as rt:
        write(rt, "a", 4000, every=2)
        first = create_backup(rt).id
        write(rt, "b", 2000, every=2)
        second = create_backup(rt).id
    live_db = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    backup_states = {bid: _state(settings.resolved_backup_dir / bid / "data.sqlite") for bid in (first, second)}
    assert backup_states[second] == _state(live_db)
    started = time.monotonic()  # one restore run to its end: how long a whole restore takes here
    done = subprocess.run([KNHK, "backup", "restore", first, "--force"], env=env, capture_output=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    full = time.monotonic() - started
    assert _state(live_db) == backup_states[first]

    outcomes = []
    for fraction in (0.25, 0.5, 0.75, 0.95, 1.5):
        current = _state(live_db)
        now_id = next(b for b, s in backup_states.items() if s == current)
        other = first if now_id == second else second
        kept_before = set(live_db.parent.glob("knhk.db.pre-restore-*"))
        proc = subprocess.Popen([KNHK, "backup", "restore", other, "--force"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=fraction * full)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        after = _state(live_db)
        assert after in (backup_states[first], backup_states[second]), "a killed restore left a mixed store"
        if after == current:
            outcomes.append("untouched")
        else:
            outcomes.append("restored")
            # the previous store is kept: beside the target, or still under the side name until the next tidy
            kept = set(live_db.parent.glob("knhk.db.pre-restore-*")) - kept_before
            sides = list(live_db.parent.glob("knhk.db.knhk-restore-*"))
            assert any(_state(p) == current for p in [*kept, *(s for s in sides if not s.name.endswith(".json"))]), \
                "the previous store was lost"
    print("restore killed at", outcomes)
    assert {"untouched", "restored"} <= set(outcomes), outcomes
    # a final restore tidies whatever the kills left and completes
    report = recovery(settings).restore_backup(OPERATOR, first, force=True)
    assert report.verification.ok
    assert _state(live_db) == backup_states[first]
    assert not list(live_db.parent.glob("knhk.db.knhk-restore*")), "a killed restore's leftovers remain"
    assert sqlite_ids(live_db) == {f"a-{i}" for i in range(4000)}
