"""Encryption of backups at rest: AES-256-GCM in fixed-size chunks (the STREAM construction), and key files.

A file is a 28-byte header (magic ``KNHKENC1``, the 8-byte key id, the chunk size as 4 bytes big-endian, an
8-byte random nonce prefix) followed by the chunks, each the GCM ciphertext and tag of up to ``chunk_bytes``
of plaintext. Chunk ``i`` uses the nonce ``prefix ‖ i`` (32-bit) and authenticates the header, ``i`` and
whether it is the final chunk, so a reordered, dropped, appended or truncated chunk fails authentication,
and a file cut at a chunk boundary is recognised as truncated (its last chunk is not marked final).

Keys are 32 random bytes kept as hex in a file of their own (mode 0600, never overwritten, like the signing
key files) or given in the environment. The key id (first 8 bytes of SHA-256 over a label and the key) is
stored in the header and the manifest, so a wrong key is named as such instead of looking like corruption.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from knhk.errors import ConfigurationError, IntegrityError

MAGIC = b"KNHKENC1"
HEADER_BYTES = 28
TAG_BYTES = 16
CHUNK_BYTES = 1 << 20
CIPHER: Literal["AES-256-GCM"] = "AES-256-GCM"


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(b"knhk-backup-key\n" + key).digest()[:8].hex()


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def encrypt_stream(key: bytes, source: BinaryIO, sink: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Encrypt everything ``source`` yields into ``sink``; return the bytes written."""
    aes = AESGCM(key)
    header = MAGIC + bytes.fromhex(key_id_of(key)) + chunk_bytes.to_bytes(4, "big") + os.urandom(8)
    sink.write(header)
    written = len(header)
    index = 0
    chunk = source.read(chunk_bytes)
    while True:
        following = source.read(chunk_bytes)
        final = not following
        nonce = header[20:28] + index.to_bytes(4, "big")
        sealed = aes.encrypt(nonce, chunk, _aad(header, index, final))
        sink.write(sealed)
        written += len(sealed)
        if final:
            return written
        chunk, index = following, index + 1
        if index >= 1 << 32:
            raise IntegrityError("backup too large for one encrypted stream")


def read_header(source: BinaryIO, what: str) -> tuple[bytes, str, int]:
    header = source.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
        raise IntegrityError(f"{what} is not a KNHK encrypted backup file (bad or missing header)")
    chunk_bytes = int.from_bytes(header[16:20], "big")
    if not 1024 <= chunk_bytes <= 1 << 30:
        raise IntegrityError(f"{what}: header names an impossible chunk size {chunk_bytes}")
    return header, header[8:16].hex(), chunk_bytes


def decrypt_stream(key: bytes, source: BinaryIO, sink: BinaryIO, what: str) -> int:
    """Decrypt ``source`` into ``sink``; return the plaintext bytes. IntegrityError names the failing chunk."""
    header, key_id, chunk_bytes = read_header(source, what)
    if key_id != key_id_of(key):
        raise IntegrityError(f"{what} was encrypted with backup key {key_id}; the configured key is {key_id_of(key)}")
    aes = AESGCM(key)
    size = chunk_bytes + TAG_BYTES
    index = 0
    total = 0
    sealed = source.read(size)
    while True:
        following = source.read(size)
        final = not following
        nonce = header[20:28] + index.to_bytes(4, "big")
        try:
            plain = aes.decrypt(nonce, sealed, _aad(header, index, final))
        except InvalidTag:
            if final and len(sealed) == size:
                try:
                    aes.decrypt(nonce, sealed, _aad(header, index, False))
                except InvalidTag:
                    pass
                else:
                    raise IntegrityError(f"{what} is truncated: it ends after chunk {index}, which is not "
                                         "the final chunk") from None
            raise IntegrityError(f"{what}: encrypted chunk {index} fails authentication "
                                 "(the file is corrupted, truncated or tampered with)") from None
        sink.write(plain)
        total += len(plain)
        if final:
            return total
        sealed, index = following, index + 1


# -- key files --------------------------------------------------------------------------------------------
def parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise ConfigurationError(f"backup key from {where} is not hex text") from exc
    if len(key) != 32:
        raise ConfigurationError(f"backup key from {where} must be 32 bytes (64 hex digits), not {len(key)}")
    return key


def read_key_file(path: Path) -> bytes:
    """Read a backup key file; refuse one that others than its owner may read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read backup key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"backup key file {path} is accessible to other users "
                                 f"(mode {stat.S_IMODE(mode):04o}); make it 0600")
    return parse_key(text, str(path))


def write_key_file(path: Path) -> str:
    """Create a new random key in ``path`` (0600, never overwriting an existing file); return its key id."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigurationError(f"backup key file {path} already exists; it is never overwritten") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key_id_of(key)
