"""The backup manifest: what a backup must contain, written when it is taken and checked on every restore.

A manifest is canonical JSON (the ledger's canonical encoding, :mod:`knhk.proof.canonical`) with a
``digest`` field: the hex SHA-256 of the canonical encoding of every other field, so an edited or truncated
manifest is refused before anything else is read. It records

* ``files``: each stored file's size and SHA-256 as it lies on disk (encrypted or not), and ``content``: the
  size and SHA-256 of the plaintext data (the SQLite file or the pg_dump archive) once decrypted;
* ``state``: row counts per table, the schema version, and per ledger log the tree size, the RFC 9162 root
  hash at that size and the newest signed checkpoint (C2SP note) stored at backup time;
* ``state_after``: for a physical backup taken while the database keeps writing (pgBackRest), the same facts
  read once the backup finished. The backup's consistent point lies between ``state`` and ``state_after``:
  append-only tables and logs must lie within those bounds, and logs must be consistent with both
  checkpoints. ``None`` for exact backups (SQLite online backup, pg_dump from an exported snapshot);
* ``encryption``: the cipher and the id of the key (never the key) for SQLite and pg_dump backups;
* ``pgbackrest``: the backup set (label, type, LSN and WAL range, times, sizes, digest of its manifest).

Format versioning: ``format`` is 1. PHI values travel sealed in their rows, and their data key only wrapped in
``data_keys`` (counted like every table); the key-encryption key is never in a backup. Later releases add
sections (archived observation partitions with their segment roots) under a new format number; this
release refuses any manifest whose format or fields it does not know, rather than half-checking it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knhk.errors import IntegrityError
from knhk.proof.canonical import canonical_bytes

FORMAT: Literal[1] = 1
MANIFEST_NAME = "manifest.json"
Kind = Literal["sqlite", "pg_dump", "pgbackrest"]

#: Tables whose rows are only ever inserted (the database refuses UPDATE and DELETE): between two states of
#: one installation their counts can only grow. Other tables (leases, pointers, thresholds, subject keys
#: that erasure deletes, observations of which retention drops archived months) are counted exactly for exact
#: backups and reported, not bounded, for physical ones.
APPEND_ONLY_TABLES = frozenset({
    "ledger_entries", "ledger_nodes", "ledger_checkpoints", "ledger_key_use", "ledger_keys", "observation_ids",
    "observation_segments", "snapshots", "snapshot_collections", "snapshot_history", "proposals", "validations",
    "approvals", "cycles", "schema_migrations",
})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FileDigest(_Model):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$")
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Checkpoint(_Model):
    tree_size: int = Field(ge=1)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    note: str = Field(min_length=1)


class LogState(_Model):
    tree_size: int = Field(ge=0)
    root_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    checkpoint: Checkpoint | None = None


class StoreState(_Model):
    schema_version: int = Field(ge=0)
    tables: dict[str, int]
    logs: dict[str, LogState]


class Encryption(_Model):
    cipher: Literal["AES-256-GCM"]
    chunk_bytes: int = Field(ge=1024)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")


class PgBackRestSet(_Model):
    stanza: str
    label: str
    type: Literal["full", "diff", "incr"]
    start_us: int
    stop_us: int
    lsn_start: str
    lsn_stop: str
    wal_start: str
    wal_stop: str
    size: int
    delta: int
    repo_size: int
    repo_delta: int
    cipher: str
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(_Model):
    format: Literal[1] = FORMAT
    id: str = Field(pattern=r"^[0-9A-Za-z._-]{1,100}$")
    kind: Kind
    created_us: int
    knhk_version: str
    dialect: Literal["sqlite", "postgresql"]
    database: str
    files: list[FileDigest]
    content: FileDigest | None = None
    encryption: Encryption | None = None
    state: StoreState
    state_after: StoreState | None = None
    pgbackrest: PgBackRestSet | None = None

    @property
    def exact(self) -> bool:
        return self.state_after is None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        return hashlib.sha256(canonical_bytes(self.body())).hexdigest()

    def to_bytes(self) -> bytes:
        return orjson.dumps({**self.body(), "digest": self.digest()}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    def file(self, name: str) -> FileDigest | None:
        return next((f for f in self.files if f.name == name), None)


def parse_manifest(raw: bytes, where: str = MANIFEST_NAME) -> Manifest:
    """Parse and check a manifest; :class:`IntegrityError` says what is wrong with it."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise IntegrityError(f"{where} is not JSON (truncated or corrupted?): {exc}") from exc
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where} is not a JSON object")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise IntegrityError(f"{where} has format {fmt!r}; this knhk reads format {FORMAT} only")
    claimed = doc.pop("digest", None)
    if not isinstance(claimed, str):
        raise IntegrityError(f"{where} carries no digest")
    try:
        manifest = Manifest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise IntegrityError(f"{where}: field {field}: {first['msg']}") from exc
    actual = manifest.digest()
    if actual != claimed:
        raise IntegrityError(f"{where} was altered: its digest is {claimed[:16]}…, its content hashes to "
                             f"{actual[:16]}…")
    return manifest
