"""Offline proof bundles: one entry, its inclusion proof and a signed checkpoint, checkable with no database.

Bundle JSON: ``{"log", "entry", "leaf_index", "tree_size", "inclusion_proof", "checkpoint", "public_key"}``
where ``entry`` holds every payload field plus ``id`` and ``sig`` (hex), ``inclusion_proof`` is a list of hex
hashes in RFC 9162 order, ``checkpoint`` is the C2SP signed-note text and ``public_key`` is the hex of the raw
32-byte Ed25519 key that signed both the entry and the checkpoint. :func:`verify_bundle` re-derives everything
from the entry fields and raises :class:`~knhk.errors.VerificationError` naming the check that failed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from knhk.errors import KnhkError, VerificationError
from knhk.proof.checkpoint import Checkpoint, verify_checkpoint
from knhk.proof.entry import Entry, payload_from_json
from knhk.proof.merkle import leaf_hash, proves_inclusion
from knhk.proof.signing import is_valid_signature, key_id_of

BUNDLE_FIELDS = ("log", "entry", "leaf_index", "tree_size", "inclusion_proof", "checkpoint", "public_key")


def make_bundle(entry: Entry, tree_size: int, proof: Sequence[bytes], checkpoint_note: str,
                public_key: bytes) -> dict[str, Any]:
    return {
        "log": entry.log,
        "entry": entry.to_json(),
        "leaf_index": entry.seq,
        "tree_size": tree_size,
        "inclusion_proof": [h.hex() for h in proof],
        "checkpoint": checkpoint_note,
        "public_key": public_key.hex(),
    }


_LOWER_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    """Lowercase hex only: ``bytes.fromhex`` alone would also accept upper case and spaces, so one bundle
    could be spelled many ways and still verify."""
    if not isinstance(value, str) or not _LOWER_HEX.fullmatch(value):
        raise VerificationError(f"{what} is not lowercase hex text")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise VerificationError(f"{what} is {len(raw)} bytes, expected {size}")
    return raw


def _entry_payload(bundle: Mapping[str, Any], public_key: bytes) -> bytes:
    """The entry's canonical payload, once its id, key id and signature are checked against the bundle's key."""
    entry = bundle["entry"]
    if not isinstance(entry, Mapping):
        raise VerificationError("bundle entry is not an object")
    try:
        payload = payload_from_json(entry)
    except KnhkError as exc:
        raise VerificationError(f"entry cannot be re-encoded: {exc}") from exc
    if hashlib.sha256(payload).hexdigest() != entry.get("id"):
        raise VerificationError("entry id is not the SHA-256 of its payload")
    if entry.get("key_id") != key_id_of(public_key):
        raise VerificationError("entry key_id does not name the bundle's public key")
    if not is_valid_signature(public_key, payload, _hex(entry.get("sig"), "entry sig", 64)):
        raise VerificationError("entry signature does not verify with the bundle's public key")
    return payload


def _position(bundle: Mapping[str, Any]) -> tuple[str, int, int]:
    """(log, leaf index, tree size), consistent between the bundle and its entry."""
    entry = bundle["entry"]
    log, index, size = bundle["log"], bundle["leaf_index"], bundle["tree_size"]
    if entry.get("log") != log:
        raise VerificationError("entry log differs from the bundle's log")
    if type(index) is not int or type(size) is not int or entry.get("seq") != index:
        raise VerificationError("leaf_index must be the entry's seq")
    return log, index, size


def _checkpoint(bundle: Mapping[str, Any], log: str, size: int, public_key: bytes) -> Checkpoint:
    if not isinstance(bundle["checkpoint"], str):
        raise VerificationError("checkpoint is not signed-note text")
    checkpoint = verify_checkpoint(bundle["checkpoint"], public_key)
    if not checkpoint.origin.endswith(f"knhk/{log}"):
        raise VerificationError(f"checkpoint origin {checkpoint.origin!r} is not the log {log!r}")
    if checkpoint.tree_size != size:
        raise VerificationError(f"checkpoint covers {checkpoint.tree_size} entries, bundle says {size}")
    return checkpoint


def verify_bundle(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """Check a proof bundle; return what it proves, or raise :class:`VerificationError` naming the failed check."""
    if not isinstance(bundle, Mapping):
        raise VerificationError("bundle is not a JSON object")
    missing = [f for f in BUNDLE_FIELDS if f not in bundle]
    if missing:
        raise VerificationError(f"bundle lacks fields: {', '.join(missing)}")
    public_key = _hex(bundle["public_key"], "public_key", 32)
    payload = _entry_payload(bundle, public_key)
    log, index, size = _position(bundle)
    checkpoint = _checkpoint(bundle, log, size, public_key)
    proof_raw = bundle["inclusion_proof"]
    if not isinstance(proof_raw, list):
        raise VerificationError("inclusion_proof is not a list")
    proof = [_hex(h, "inclusion proof hash", 32) for h in proof_raw]
    if not proves_inclusion(leaf_hash(payload), index, size, proof, checkpoint.root_hash):
        raise VerificationError("inclusion proof does not lead to the checkpoint's root hash")
    entry = bundle["entry"]
    return {
        "ok": True,
        "log": log,
        "seq": index,
        "id": entry["id"],
        "kind": entry.get("kind"),
        "tree_size": size,
        "root_hash": checkpoint.root_hash.hex(),
        "origin": checkpoint.origin,
        "key_id": entry["key_id"],
        "proved": [
            "entry id is the SHA-256 of its canonical payload",
            "entry signature verifies with the public key",
            "checkpoint is signed by the same key",
            f"entry is leaf {index} of the {size}-entry tree whose root the checkpoint commits to",
        ],
    }
