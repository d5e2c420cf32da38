"""Key generation and rotation keep every entry verifiable and never leak a private key.

Proves, through the real ``knhk keys generate|rotate|list`` commands on both backends: key files are created
with mode 0600 (directory 0700) and ``generate --out`` refuses to overwrite; after a rotation new entries
carry the new key id, the old key is kept (retired), the whole ledger still verifies, and an offline proof
bundle for an entry signed by the old key verifies with no database (it rests on the checkpoint that closed
the log under the old key); no private seed appears in any output or log line. Through the API: several
rotations in a row keep every entry provable, and an entry signed with a retired key after its retirement
is caught by the verifier.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import orjson
import pytest
from ledger_support import NOBODY_DB, attacker, open_runtime, rewrite_log, run_cli

from knhk.proof.bundle import verify_bundle
from knhk.proof.entry import EntryDraft
from knhk.proof.signing import SigningKey


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_generate_rotate_list_and_old_entries_keep_verifying(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    outputs: list[str] = []

    def knhk(*args: str, code: int = 0) -> str:
        done = run_cli(list(args), data, database_url, env={"KNHK_LOG_LEVEL": "DEBUG"})
        outputs.extend([done.stdout, done.stderr])
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout

    first = orjson.loads(knhk("keys", "generate", "--json"))
    key_file = Path(first["file"])
    assert key_file.parent == data / "keys"
    assert _mode(key_file) == 0o600
    assert _mode(key_file.parent) == 0o700
    before = orjson.loads(knhk("audit", "append", "--actor", "alice@example.org", "--action", "change.approved",
                               "--resource", "sigma/finance", "--outcome", "success", "--json"))
    assert before["key_id"] == first["key_id"]

    # A deployment key made with --out, then activated by rotation.
    new_file = tmp_path / "deploy" / "next.key"
    made = orjson.loads(knhk("keys", "generate", "--out", str(new_file), "--json"))
    assert _mode(new_file) == 0o600
    content = new_file.read_text()
    refused = run_cli(["keys", "generate", "--out", str(new_file)], data, database_url)
    outputs.extend([refused.stdout, refused.stderr])
    assert refused.returncode == 1
    assert "refusing to overwrite" in refused.stderr
    assert new_file.read_text() == content  # untouched

    rotated = orjson.loads(knhk("keys", "rotate", "--key-file", str(new_file), "--reason", "yearly", "--json"))
    assert rotated["previous_key_id"] == first["key_id"]
    assert rotated["key_id"] == made["key_id"]
    assert _mode(data / "keys" / f"{made['key_id']}.key") == 0o600

    listed = {k["key_id"]: k for k in orjson.loads(knhk("keys", "list", "--json"))}
    assert set(listed) == {first["key_id"], made["key_id"]}
    assert listed[first["key_id"]]["retired"] is not None
    assert not listed[first["key_id"]]["active"]
    assert listed[made["key_id"]]["active"]
    assert listed[made["key_id"]]["retired"] is None

    entries = orjson.loads(knhk("receipts", "list", "--log", "audit", "--limit", "1000", "--json"))
    assert entries[-1]["kind"] == "key.rotated"  # the rotation is itself audited, under the new key
    assert entries[-1]["key_id"] == made["key_id"]
    assert entries[-1]["data"]["metadata"] == {"previous_key_id": first["key_id"], "key_id": made["key_id"]}
    assert {e["key_id"] for e in entries[:-1]} == {first["key_id"]}

    report = orjson.loads(knhk("receipts", "verify", "--log", "all", "--json"))
    assert report["ok"]

    bundle_file = tmp_path / "old.json"
    bundle_file.write_text(knhk("receipts", "prove", str(before["seq"]), "--log", "audit"))
    bundle = orjson.loads(bundle_file.read_text())
    assert bundle["entry"]["id"] == before["id"]
    assert bundle["public_key"] == listed[first["key_id"]]["public_key"]
    offline = run_cli(["receipts", "verify-bundle", str(bundle_file), "--json"], data, NOBODY_DB)
    outputs.extend([offline.stdout, offline.stderr])
    assert offline.returncode == 0, offline.stderr
    assert orjson.loads(offline.stdout)["key_id"] == first["key_id"]

    seeds = [(data / "keys" / f"{k}.key").read_text().strip() for k in listed]
    assert len(seeds) == 2
    everything = "\n".join(outputs)
    assert "DEBUG" in everything or "INFO" in everything  # logging really was on
    for seed in seeds:
        secret_key = SigningKey.from_hex(seed)
        assert len(seed) == 64
        for form in (seed, seed.upper(), seed[:32], seed[32:]):
            assert form not in everything
        assert secret_key.public_key.hex() in everything  # the public half is shown, as it should be


def test_rotations_keep_every_entry_provable(tmp_path: Path, database_url: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="knhk")
    rt = open_runtime(database_url, tmp_path / "data", checkpoint_every_entries=10_000)
    try:
        ledger = rt.ledger
        signers = []
        for round_ in range(3):
            entries = ledger.append_many([EntryDraft(log="receipts", kind="rot.tested", data={"r": round_, "i": i})
                                          for i in range(5)])
            signers.append(entries[0].key_id)
            old, public = ledger.rotate_key()
            assert old == entries[0].key_id
            assert public.key_id != old
        ledger.rotate_key()  # twice in a row: a key that never signed anything
        last = ledger.append(EntryDraft(log="receipts", kind="rot.tested"))
        assert len(set(signers)) == 3
        assert last.key_id not in signers
        assert rt.keyring.active_key_id() == last.key_id
        keys = rt.keyring.public_keys(refresh=True)
        assert len(keys) == 5
        assert sum(1 for k in keys.values() if k.retired_us is None) == 1
        assert ledger.verify("receipts").ok
        for seq in range(16):
            bundle = ledger.prove("receipts", seq)
            result = verify_bundle(orjson.loads(orjson.dumps(bundle)))
            assert result["key_id"] == ledger.entry("receipts", seq).key_id
        seeds = [rt.keyring.signing_key(k).seed_hex() for k in keys]
        for record in caplog.records:
            for seed in seeds:
                assert seed not in record.getMessage()
                assert seed not in repr(record.args)
        for k in keys:
            assert seeds[0] not in repr(rt.keyring.signing_key(k))
    finally:
        rt.close()


def test_an_entry_signed_by_a_retired_key_after_retirement_is_caught(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    rt = open_runtime(database_url, data)
    try:
        rt.ledger.append_many([EntryDraft(log="receipts", kind="rot.tested", data={"i": i}) for i in range(4)])
        old_id = rt.keyring.active_key_id()
        assert old_id is not None
        old_key = rt.keyring.signing_key(old_id)
        rt.ledger.rotate_key()
        rt.ledger.append_many([EntryDraft(log="receipts", kind="rot.tested", data={"i": i}) for i in range(4, 8)])
        assert rt.ledger.verify("receipts").ok
    finally:
        rt.close()
    # Someone holding the old (retired) key re-signs the newest entries with it, recomputing everything.
    with attacker(database_url) as raw:
        rewrite_log(raw, "receipts", 6, old_key, lambda seq, f: None, resign_checkpoints=True)
    rt = open_runtime(database_url, data)
    try:
        report = rt.ledger.verify("receipts")
        assert not report.ok
        assert report.signature_failures == 2
        first = report.first_failure
        assert first is not None
        assert first.seq == 6
        assert "was not the log's key at seq 6" in first.reason
    finally:
        rt.close()
