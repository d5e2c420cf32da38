"""Checkpoints are C2SP tlog-checkpoint signed notes, exactly, and any alteration is rejected.

Proves: the text is ``<prefix>knhk/<log>`` / size / base64 root / blank line / ``— <name> <base64(key hash ‖
signature)>`` with the configurable ``log_origin_prefix``; the key hash is SHA-256(name ‖ 0x0A ‖ 0x01 ‖
public key)[:4]; the signature verifies with an independent Ed25519 implementation (``cryptography``) over
the body bytes; changing any character of a note (body, signature, key hash, name, layout) makes it fail;
the sequencer issues checkpoints every N entries and every T seconds; ``knhk receipts checkpoint [--log L]``
stores a checkpoint that an outsider can verify against the log's root.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from pathlib import Path

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_support import make_settings, run_cli

from knhk.app.runtime import Runtime
from knhk.errors import IntegrityError
from knhk.ops.clock import ManualClock
from knhk.proof.checkpoint import origin_for, parse_checkpoint, sign_checkpoint, verify_checkpoint
from knhk.proof.entry import EntryDraft
from knhk.proof.signing import SigningKey

KEY = SigningKey(hashlib.sha256(b"checkpoint test key").digest())
ROOT = hashlib.sha256(b"some root").digest()


def c2sp_key_hash(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public_key).digest()[:4]


def check_with_cryptography(note: str, public_key: bytes) -> tuple[str, int, bytes]:
    """An outsider's check of a KNHK checkpoint: parse the note by hand, verify with OpenSSL's Ed25519."""
    body, _, sigs = note.partition("\n\n")
    origin, size, root_b64 = body.split("\n")
    [line] = sigs.rstrip("\n").split("\n")
    assert line.startswith("\u2014 ")
    name, b64 = line[2:].split(" ")
    raw = base64.b64decode(b64, validate=True)
    assert name == origin
    assert raw[:4] == c2sp_key_hash(name, public_key)
    Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], (body + "\n").encode())
    return origin, int(size), base64.b64decode(root_b64, validate=True)


@pytest.mark.parametrize("prefix", ["", "ledger.example.org/", "bank.test/prod/"])
@pytest.mark.parametrize("log", ["receipts", "audit"])
def test_signed_note_text_is_exactly_c2sp(prefix: str, log: str) -> None:
    origin = origin_for(log, prefix)
    assert origin == f"{prefix}knhk/{log}"
    cp = sign_checkpoint(origin, 1234, ROOT, KEY)
    body = f"{prefix}knhk/{log}\n1234\n{base64.b64encode(ROOT).decode()}\n"
    signature = KEY.sign(body.encode())
    expected = body + "\n" + f"\u2014 {origin} " + base64.b64encode(
        c2sp_key_hash(origin, KEY.public_key) + signature).decode() + "\n"
    assert cp.note == expected
    assert check_with_cryptography(cp.note, KEY.public_key) == (origin, 1234, ROOT)
    parsed = verify_checkpoint(cp.note, KEY.public_key, origin=origin)
    assert (parsed.origin, parsed.tree_size, parsed.root_hash) == (origin, 1234, ROOT)


def test_origin_may_not_contain_spaces_or_plus() -> None:
    for bad in ("my log/", "a+b/"):
        with pytest.raises(ValueError, match="may not contain"):
            origin_for("receipts", bad)


def test_verification_against_the_wrong_key_or_origin_fails() -> None:
    cp = sign_checkpoint("knhk/receipts", 7, ROOT, KEY)
    other = SigningKey(hashlib.sha256(b"other").digest())
    with pytest.raises(IntegrityError, match="no signature by the log's public key"):
        verify_checkpoint(cp.note, other.public_key)
    with pytest.raises(IntegrityError, match="origin"):
        verify_checkpoint(cp.note, KEY.public_key, origin="knhk/audit")
    with pytest.raises(InvalidSignature):
        check_with_cryptography(cp.note.replace("\n7\n", "\n8\n"), KEY.public_key)


NOTE = sign_checkpoint("ledger.example.org/knhk/receipts", 1_000_000, ROOT, KEY).note
_printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from(["\n", "\u2014", "=", "/"])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(NOTE) - 1), _printable, st.sampled_from(["replace", "insert", "delete"]))
def test_any_change_to_a_note_is_rejected(position: int, char: str, how: str) -> None:
    if how == "replace":
        changed = NOTE[:position] + char + NOTE[position + 1:]
    elif how == "insert":
        changed = NOTE[:position] + char + NOTE[position:]
    else:
        changed = NOTE[:position] + NOTE[position + 1:]
    if changed == NOTE:
        return
    with pytest.raises(IntegrityError):
        verify_checkpoint(changed, KEY.public_key)


def test_key_hash_and_signature_bytes_are_checked_separately() -> None:
    body, _, line = NOTE.partition("\n\n")
    name, b64 = line[2:].rstrip("\n").split(" ")
    raw = base64.b64decode(b64)
    bad_hash = bytes([raw[0] ^ 1]) + raw[1:]
    bad_sig = raw[:4] + bytes([raw[4] ^ 1]) + raw[5:]
    for blob, message in ((bad_hash, "no signature by the log's public key"), (bad_sig, "does not verify")):
        note = f"{body}\n\n\u2014 {name} {base64.b64encode(blob).decode()}\n"
        with pytest.raises(IntegrityError, match=message):
            verify_checkpoint(note, KEY.public_key)
    # A note whose base64 is re-spelled in its unused bits decodes to the same bytes; it is refused too.
    last = b64[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    respelled = b64[:-2] + alphabet[alphabet.index(last) ^ 1] + b64[-1]
    assert base64.b64decode(respelled) == raw
    with pytest.raises(IntegrityError, match="canonical base64"):
        verify_checkpoint(f"{body}\n\n\u2014 {name} {respelled}\n", KEY.public_key)
    body_lines = body.split("\n")
    with pytest.raises(IntegrityError, match="not a decimal"):
        parse_checkpoint(f"{body_lines[0]}\n01000000\n{body_lines[2]}\n\n{line}")


def test_sequencer_issues_checkpoints_every_n_entries_and_every_t_seconds(tmp_path: Path, database_url: str) -> None:
    clock = ManualClock()
    settings_ = make_settings(database_url, tmp_path / "data", checkpoint_every_entries=50,
                              checkpoint_every_seconds=60, log_origin_prefix="ops.example/")
    rt = Runtime.open(settings_, clock=clock, install_packs=False)
    try:
        ledger = rt.ledger
        for i in range(23):  # batches of 7 entries
            ledger.append_many([EntryDraft(log="receipts", kind="cp.tested", data={"i": i, "j": j}) for j in range(7)])
        sizes = [cp.tree_size for cp in ledger.checkpoints("receipts")]
        assert sizes[0] == 7  # a fresh log is checkpointed at once (no checkpoint is older than T)
        assert all(b - a >= 50 for a, b in itertools.pairwise(sizes))
        assert all(b - a < 57 for a, b in itertools.pairwise(sizes))  # N entries, rounded up to a batch
        clock.advance(61)
        ledger.append(EntryDraft(log="receipts", kind="cp.tested"))
        latest = ledger.latest_checkpoint("receipts")
        assert latest is not None
        assert latest.tree_size == 23 * 7 + 1  # due by time although fewer than N entries were added
        public = rt.keyring.public_key(latest.key_id).public_key
        for cp in ledger.checkpoints("receipts"):
            origin, size, root = check_with_cryptography(cp.note, public)
            assert origin == "ops.example/knhk/receipts"
            assert size == cp.tree_size
            assert root == cp.root_hash == ledger.root("receipts", size)
    finally:
        rt.close()


def test_cli_checkpoint_stores_a_verifiable_checkpoint(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    env = {"KNHK_LOG_ORIGIN_PREFIX": "cli.example/"}
    done = run_cli(["audit", "append", "--actor", "ops@example.org", "--action", "deploy.started",
                    "--resource", "svc/api", "--outcome", "success"], data, database_url, env=env)
    assert done.returncode == 0, done.stderr
    notes = {}
    for log in ("receipts", "audit"):
        done = run_cli(["receipts", "checkpoint", "--log", log, "--json"], data, database_url, env=env)
        assert done.returncode == 0, done.stderr
        notes[log] = orjson.loads(done.stdout)
    keys = orjson.loads(run_cli(["keys", "list", "--json"], data, database_url, env=env).stdout)
    again = run_cli(["receipts", "checkpoint", "--log", "audit"], data, database_url, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == notes["audit"]["note"]  # the plain form prints the note itself
    rt = Runtime.open(make_settings(database_url, data, log_origin_prefix="cli.example/"), install_packs=False)
    try:
        for log, out in notes.items():
            public = bytes.fromhex(next(k["public_key"] for k in keys if k["key_id"] == out["key_id"]))
            origin, size, root = check_with_cryptography(out["note"], public)
            assert origin == f"cli.example/knhk/{log}"
            assert size == out["tree_size"] == rt.ledger.tree_size(log)
            assert root.hex() == out["root_hash"]
            stored = rt.ledger.latest_checkpoint(log)  # it was stored
            assert stored is not None
            assert stored.note == out["note"]
            assert rt.ledger.root(log, size) == root
            assert rt.ledger.verify(log).ok
    finally:
        rt.close()
