"""Checkpoints as C2SP tlog-checkpoint text, signed as a C2SP signed note (Ed25519).

A checkpoint body is three lines: origin, decimal tree size, base64 root hash, each ending in a newline.
The signed note appends a blank line and one signature line per signer::

    — <key name> <base64(key hash ‖ signature)>

where the 4-byte key hash is the first bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key) (0x01 names the
Ed25519 signature type) and the signature is over the body bytes. KNHK names the key after the origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from knhk.errors import VerificationError
from knhk.proof.signing import SigningKey, is_valid_signature

ED25519_TYPE = b"\x01"
_DASH = "\u2014 "
_NAME = re.compile(r"^[^\s+]+$")
_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


def _b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 with padding, in its one canonical spelling (unused bits zero), or VerificationError.

    Without the round-trip check, a note could be re-spelled (e.g. the last character of a signature
    changed within its unused bits) and still verify, so two different texts would carry one signature.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"checkpoint {what} is not base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerificationError(f"checkpoint {what} is not canonical base64")
    return raw


def note_key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte signed-note key hash of an Ed25519 verifier key."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + public_key).digest()[:4]


def origin_for(log: str, prefix: str = "") -> str:
    """The checkpoint origin line of a KNHK log: ``<prefix>knhk/<log>``."""
    origin = f"{prefix}knhk/{log}"
    if not _NAME.match(origin):
        raise ValueError(f"checkpoint origin {origin!r} may not contain spaces or '+'")
    return origin


@dataclass(frozen=True)
class Checkpoint:
    """A verified or freshly signed checkpoint."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str

    @property
    def body(self) -> str:
        return body_text(self.origin, self.tree_size, self.root_hash)


def body_text(origin: str, tree_size: int, root_hash: bytes) -> str:
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


def sign_checkpoint(origin: str, tree_size: int, root_hash: bytes, key: SigningKey) -> Checkpoint:
    """Issue a checkpoint for a tree, signed by ``key`` under the key name ``origin``."""
    body = body_text(origin, tree_size, root_hash)
    sig = key.sign(body.encode())
    line = _DASH + origin + " " + base64.b64encode(note_key_hash(origin, key.public_key) + sig).decode()
    return Checkpoint(origin, tree_size, root_hash, body + "\n" + line + "\n")


def parse_checkpoint(note: str) -> tuple[Checkpoint, list[tuple[str, bytes, bytes]]]:
    """Split a signed checkpoint into its body and its (name, key hash, signature) lines.

    Raises :class:`VerificationError` saying which part is malformed.
    """
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise VerificationError("checkpoint has no blank line before its signatures")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise VerificationError("checkpoint body needs origin, tree size and root hash lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not _NAME.match(origin):
        raise VerificationError("checkpoint origin line is empty or contains spaces")
    if not _SIZE.match(size_text):
        raise VerificationError(f"checkpoint tree size {size_text!r} is not a decimal number")
    root = _b64decode_strict(root_text, "root hash")
    if len(root) != 32:
        raise VerificationError("checkpoint root hash is not 32 bytes")
    if not sigs.endswith("\n"):
        raise VerificationError("checkpoint signature block does not end in a newline")
    signatures: list[tuple[str, bytes, bytes]] = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise VerificationError(f"checkpoint signature line {line!r} does not start with an em dash")
        name, _, b64 = line[len(_DASH):].partition(" ")
        raw = _b64decode_strict(b64, "signature")
        if len(raw) < 5:
            raise VerificationError("checkpoint signature is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return Checkpoint(origin, int(size_text), root, note), signatures


def verify_checkpoint(note: str, public_key: bytes, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint against one public key; return the checkpoint or raise VerificationError."""
    checkpoint, signatures = parse_checkpoint(note)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(f"checkpoint origin is {checkpoint.origin!r}, expected {origin!r}")
    want_hash = note_key_hash(checkpoint.origin, public_key)
    body = note.partition("\n\n")[0] + "\n"
    for name, key_hash, sig in signatures:
        if name == checkpoint.origin and key_hash == want_hash:
            if is_valid_signature(public_key, body.encode(), sig):
                return checkpoint
            raise VerificationError("checkpoint signature does not verify with the log's public key")
    raise VerificationError("checkpoint carries no signature by the log's public key")
