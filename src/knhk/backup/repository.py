"""The backup directory (``KNHK_BACKUP_DIR``): one sub-directory per backup, holding its data files and
``manifest.json``. A backup is written into a hidden staging directory and renamed into place only once it
is complete, so a killed ``create`` never leaves something that looks like a backup.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from knhk.backup.manifest import MANIFEST_NAME, FileDigest, Manifest, parse_manifest
from knhk.errors import IntegrityError, NotFoundError

LATEST = "latest"

_READ = 1 << 20


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def digest_file(path: Path, name: str | None = None) -> FileDigest:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_READ):
            h.update(block)
            size += len(block)
    return FileDigest(name=name or path.name, bytes=size, sha256=h.hexdigest())


def copy_stream(source: BinaryIO, sink: BinaryIO) -> None:
    while block := source.read(_READ):
        sink.write(block)


@dataclass(frozen=True)
class Stored:
    path: Path
    manifest: Manifest


class Repository:
    def __init__(self, root: Path) -> None:
        self.root = root

    def new_id(self, kind: str, now_us: int) -> str:
        stamp = datetime.fromtimestamp(now_us / 1_000_000, UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{stamp}-{kind.replace('_', '')}-{uuid.uuid4().hex[:6]}"

    def staging(self, backup_id: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / f".{backup_id}.partial"
        path.mkdir(mode=0o700)
        return path

    def commit(self, staging: Path, manifest: Manifest) -> Path:
        target = self.root / manifest.id
        tmp = staging / (MANIFEST_NAME + ".tmp")
        with tmp.open("wb") as handle:
            handle.write(manifest.to_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        tmp.rename(staging / MANIFEST_NAME)
        for child in staging.iterdir():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(staging)
        staging.rename(target)
        fsync_dir(self.root)
        return target

    def discard(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def resolve(self, ref: str) -> Path:
        """A backup by id (in this directory), ``latest`` (the newest complete one; what the monthly
        verification CronJob names), or by the path of its directory."""
        if ref == LATEST:
            complete = [stored for _, stored in self.entries() if isinstance(stored, Stored)]
            if not complete:
                raise NotFoundError(f"no complete backup in {self.root}")
            return max(complete, key=lambda s: (s.manifest.created_us, s.path.name)).path
        candidate = Path(ref)
        if candidate.is_dir():
            return candidate
        if "/" in ref or ref.startswith("."):
            raise NotFoundError(f"no backup directory {ref}")
        path = self.root / ref
        if not path.is_dir():
            raise NotFoundError(f"no backup {ref} in {self.root}")
        return path

    def load(self, ref: str) -> Stored:
        path = self.resolve(ref)
        file = path / MANIFEST_NAME
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"backup {path.name} has no {MANIFEST_NAME} (incomplete, or not a KNHK "
                                 "backup)") from None
        manifest = parse_manifest(raw, f"{path.name}/{MANIFEST_NAME}")
        if manifest.id != path.name:
            raise IntegrityError(f"{path.name}/{MANIFEST_NAME} describes backup {manifest.id}, not {path.name}")
        return Stored(path, manifest)

    def entries(self) -> Iterator[tuple[str, Stored | IntegrityError]]:
        """Every backup directory, newest first, with its manifest or the reason it cannot be read."""
        if not self.root.is_dir():
            return
        for path in sorted((p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                           key=lambda p: p.name, reverse=True):
            try:
                yield path.name, self.load(str(path))
            except IntegrityError as exc:
                yield path.name, exc


def check_files(stored: Stored) -> list[str]:
    """Every file the manifest lists: present, of the recorded size and SHA-256. Returns the problems."""
    problems = []
    for want in stored.manifest.files:
        path = stored.path / want.name
        if not path.is_file():
            problems.append(f"{want.name}: missing from the backup")
            continue
        have = digest_file(path)
        if have.bytes < want.bytes:
            problems.append(f"{want.name}: truncated ({have.bytes} of {want.bytes} bytes)")
        elif have.bytes > want.bytes:
            problems.append(f"{want.name}: {have.bytes} bytes, longer than the {want.bytes} recorded")
        elif have.sha256 != want.sha256:
            problems.append(f"{want.name}: corrupted (SHA-256 {have.sha256[:16]}…, manifest says {want.sha256[:16]}…)")
    return problems
