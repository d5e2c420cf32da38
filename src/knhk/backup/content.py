"""A backup's single data file (SQLite database or pg_dump archive): sealed into the backup directory
(encrypted with AES-256-GCM when a backup key is configured) and unsealed into a scratch or side location,
with every digest checked on the way out.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from knhk.backup import cipher
from knhk.backup.manifest import Encryption, FileDigest, Manifest
from knhk.backup.repository import Stored, check_files, copy_stream, digest_file
from knhk.errors import ConfigurationError, IntegrityError

ENCRYPTED_SUFFIX = ".enc"


class _Hashing:
    """A write-through sink that hashes and counts what passes."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.sink.write(data)


def seal(plain: Path, key: bytes | None) -> tuple[list[FileDigest], FileDigest, Encryption | None]:
    """Turn the plaintext data file in a staging directory into the stored file (encrypting it when a key
    is given, and removing the plaintext). Returns the stored files, the content digest and the encryption."""
    content = digest_file(plain)
    if key is None:
        return [content], content, None
    stored = plain.with_name(plain.name + ENCRYPTED_SUFFIX)
    fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with plain.open("rb") as source, os.fdopen(fd, "wb") as sink:
        cipher.encrypt_stream(key, source, sink)
        sink.flush()
        os.fsync(sink.fileno())
    plain.unlink()
    encryption = Encryption(cipher=cipher.CIPHER, chunk_bytes=cipher.CHUNK_BYTES, key_id=cipher.key_id_of(key))
    return [digest_file(stored)], content, encryption


def unseal(stored: Stored, dest: Path, key: bytes | None) -> None:
    """Write the backup's plaintext data file to ``dest`` (created 0600), checking the stored file's size and
    SHA-256, the decryption, and the plaintext's SHA-256. IntegrityError names what is wrong."""
    manifest: Manifest = stored.manifest
    problems = check_files(stored)
    if problems:
        raise IntegrityError("; ".join(problems))
    if manifest.content is None or len(manifest.files) != 1:
        raise IntegrityError("the manifest names no single data file")
    source_path = stored.path / manifest.files[0].name
    enc = manifest.encryption
    if enc is not None and key is None:
        raise ConfigurationError(f"backup {manifest.id} is encrypted with backup key {enc.key_id}; configure "
                                 "KNHK_BACKUP_KEY_FILE or KNHK_BACKUP_KEY")
    if enc is not None and key is not None and cipher.key_id_of(key) != enc.key_id:
        raise IntegrityError(f"backup {manifest.id} is encrypted with backup key {enc.key_id}; the configured key "
                             f"is {cipher.key_id_of(key)}")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with source_path.open("rb") as source, os.fdopen(fd, "wb") as raw:
        sink = _Hashing(raw)
        if enc is not None and key is not None:
            cipher.decrypt_stream(key, source, sink, f"{manifest.files[0].name}")  # type: ignore[arg-type]
        else:
            copy_stream(source, sink)  # type: ignore[arg-type]
        raw.flush()
        os.fsync(raw.fileno())
    want = manifest.content
    if sink.size != want.bytes or sink.hash.hexdigest() != want.sha256:
        raise IntegrityError(f"the restored {want.name} is {sink.size} bytes with SHA-256 "
                             f"{sink.hash.hexdigest()[:16]}…; the manifest says {want.bytes} bytes, "
                             f"{want.sha256[:16]}…")
