"""Observation archives (SPEC §11 retention; docs/formats.md "Observation archives"): the files a partition
becomes before it is dropped, and their verification with no database (``knhk archive verify FILE``).

One archived partition (a *segment*) is three files in ``KNHK_ARCHIVE_DIR``, named after the segment id
``observations-YYYY-MM-<first 12 hex of the content root>``:

* ``<segment>.jsonl.gz`` — gzip, one JSON object per line (sorted keys) per observation in ingest order (seq),
  every stored column; PHI fields stay sealed exactly as stored (their data keys are never deleted);
* ``<segment>.manifest.json`` — the signed segment manifest (:class:`SegmentManifest`): count, seq and ingest
  time range, the archive file's size and SHA-256, ``content_root`` — the RFC 9162 root over one leaf per
  observation in seq order, the leaf being the evidence leaf of :mod:`knhk.proof.evidence` (``"<id> <content
  hash>"``) — and ``rows_root``, the RFC 9162 root over the archive's lines (each line's bytes a leaf), signed
  (Ed25519) by the ledger key that was active; its SHA-256 is in the ``observations.archived`` receipt;
* ``<segment>.proof.json`` — the offline proof bundle (:mod:`knhk.proof.bundle`) of that receipt: its
  inclusion in a signed checkpoint of the ``receipts`` log.

:func:`verify_segment` recomputes the count, ranges and both roots from the archive, each unsealed row's content
hash from its content, checks the manifest's signature and that the proof bundle proves the receipt that holds
the manifest's digest, and names every problem it finds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knhk.errors import KnhkError, UsageError
from knhk.observations.model import content_hash
from knhk.proof.bundle import verify_bundle
from knhk.proof.canonical import canonical_bytes
from knhk.proof.evidence import SCHEME as EVIDENCE_SCHEME
from knhk.proof.evidence import evidence_leaf
from knhk.proof.merkle import EMPTY_ROOT, fold, leaf_hash, node_hash
from knhk.proof.signing import SigningKey, is_valid_signature, key_id_of
from knhk.storage.fields import PREFIX as SEALED

FORMAT: Literal[1] = 1
ARCHIVE_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
PROOF_SUFFIX = ".proof.json"
CONTENT_SCHEME = EVIDENCE_SCHEME + "; leaves in seq order"
ROWS_SCHEME = "rfc9162-sha256/jsonl-line-v1"
ARCHIVED_KIND = "observations.archived"
_HEX64 = r"^[0-9a-f]{64}$"


class MerkleStream:
    """The RFC 9162 root of leaves added one at a time, in O(log n) memory (a stack of perfect subtrees)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.count = 0

    def add(self, leaf: bytes) -> None:
        self.count += 1
        size, node = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            left = self._stack.pop()[1]
            size, node = size * 2, node_hash(left, node)
        self._stack.append((size, node))

    def root(self) -> bytes:
        return fold([h for _, h in self._stack]) if self._stack else EMPTY_ROOT


class ArchiveFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    compression: Literal["gzip"]
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=_HEX64)


class SegmentManifest(BaseModel):
    """The signed segment manifest (public format 1; docs/formats.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    format: Literal[1]
    type: Literal["knhk.observations.segment"]
    segment: str = Field(pattern=r"^observations-[0-9]{4}-[0-9]{2}-[0-9a-f]{12}$")
    period: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$")
    lo_us: int
    hi_us: int
    count: int = Field(ge=0)
    first_seq: int | None
    last_seq: int | None
    first_received_us: int | None
    last_received_us: int | None
    archive: ArchiveFile
    content_scheme: Literal["rfc9162-sha256/obs-id-content-v1; leaves in seq order"]
    content_root: str = Field(pattern=_HEX64)
    rows_scheme: Literal["rfc9162-sha256/jsonl-line-v1"]
    rows_root: str = Field(pattern=_HEX64)
    created_us: int
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    public_key: str = Field(pattern=_HEX64)
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")

    def body(self) -> dict[str, Any]:
        """Every field but the signature: what is signed."""
        return self.model_dump(exclude={"signature"})

    def digest(self) -> str:
        """SHA-256 of the canonical manifest, signature included (what the ledger entry records)."""
        return hashlib.sha256(canonical_bytes(self.model_dump())).hexdigest()


def sign_manifest(body: dict[str, Any], key: SigningKey) -> SegmentManifest:
    body = {**body, "key_id": key.key_id, "public_key": key.public_key.hex()}
    return SegmentManifest(**body, signature=key.sign(canonical_bytes(body)).hex())


# -- rows ---------------------------------------------------------------------------------------------------
ROW_FIELDS = ("seq", "id", "sector", "event_type", "ts_us", "received_us", "value", "metadata", "content_hash",
              "conforming", "issues", "skewed", "client_id", "ts_defaulted", "client")


def row_line(row: tuple[Any, ...]) -> bytes:
    """One archive line (no newline) from a stored row in ``store.COLUMNS`` order (values as stored)."""
    doc = dict(zip(ROW_FIELDS, row, strict=True))
    for name in ("value", "metadata", "issues"):
        doc[name] = orjson.loads(doc[name])
    for name in ("conforming", "skewed", "client_id", "ts_defaulted"):
        doc[name] = bool(doc[name])
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def recomputed_hash(doc: dict[str, Any]) -> str | None:
    """The content hash of an archived row from its content; None when PHI fields in it are sealed."""
    value = doc["value"]
    if any(isinstance(v, str) and v.startswith(SEALED) for v in value.values()):
        return None
    return content_hash(doc["event_type"], doc["sector"], None if doc["ts_defaulted"] else doc["ts_us"], value,
                        doc["metadata"])


@dataclass
class Tally:
    """What a pass over archive lines adds up to."""

    content: MerkleStream = field(default_factory=MerkleStream)
    rows: MerkleStream = field(default_factory=MerkleStream)
    first_seq: int | None = None
    last_seq: int | None = None
    first_received_us: int | None = None
    last_received_us: int | None = None

    def add(self, line: bytes, seq: int, obs_id: str, digest: str, received_us: int) -> None:
        self.content.add(evidence_leaf(obs_id, digest))
        self.rows.add(leaf_hash(line))
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq = seq
        lo, hi = self.first_received_us, self.last_received_us
        self.first_received_us = received_us if lo is None else min(lo, received_us)
        self.last_received_us = received_us if hi is None else max(hi, received_us)


def paths(segment_or_file: Path) -> tuple[Path, Path, Path]:
    """(archive, manifest, proof) of a segment, from any of its three files."""
    name = segment_or_file.name
    for suffix in (ARCHIVE_SUFFIX, MANIFEST_SUFFIX, PROOF_SUFFIX):
        if name.endswith(suffix):
            base = segment_or_file.with_name(name[:-len(suffix)])
            break
    else:
        raise UsageError(f"{segment_or_file} is none of a segment's files (*{ARCHIVE_SUFFIX}, *{MANIFEST_SUFFIX}, "
                         f"*{PROOF_SUFFIX})")
    return (base.with_name(base.name + ARCHIVE_SUFFIX), base.with_name(base.name + MANIFEST_SUFFIX),
            base.with_name(base.name + PROOF_SUFFIX))


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


# -- verification -------------------------------------------------------------------------------------------
@dataclass
class SegmentReport:
    """What :func:`verify_segment` found; ``problems`` empty means verified."""

    file: str
    segment: str | None = None
    count: int | None = None
    sealed_rows: int = 0
    ledger: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "file": self.file, "segment": self.segment, "count": self.count,
                "sealed_rows": self.sealed_rows, "ledger": self.ledger, "problems": self.problems,
                "checked": self.checked}


def read_manifest(path: Path) -> SegmentManifest:
    try:
        return SegmentManifest(**orjson.loads(path.read_bytes()))
    except (orjson.JSONDecodeError, ValidationError, TypeError) as exc:
        raise FormatError(f"manifest {path.name} is not a valid segment manifest: {str(exc).splitlines()[0]}") from exc


class FormatError(Exception):
    """A file that is not what the archive format says (the message names it)."""


def signed(manifest: SegmentManifest) -> bool:
    """Does the manifest's signature verify with its public key (whose id is its key id)?"""
    public = bytes.fromhex(manifest.public_key)
    return key_id_of(public) == manifest.key_id and is_valid_signature(
        public, canonical_bytes(manifest.body()), bytes.fromhex(manifest.signature))


def _lines(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as fh:
        yield from fh


def verify_segment(file: Path) -> SegmentReport:
    """Verify one archived segment from its files alone (see the module docstring)."""
    archive, manifest_path, proof_path = paths(file)
    report = SegmentReport(file=str(file))
    for p in (archive, manifest_path, proof_path):
        if not p.is_file():
            report.problems.append(f"{p.name} is missing (a segment is its archive, manifest and proof)")
    if not manifest_path.is_file():
        return report
    try:
        manifest = read_manifest(manifest_path)
    except FormatError as exc:
        report.problems.append(str(exc))
        return report
    report.segment = manifest.segment
    public = bytes.fromhex(manifest.public_key)
    if key_id_of(public) != manifest.key_id:
        report.problems.append(f"manifest: key_id {manifest.key_id} is not the id of its public key")
    elif not is_valid_signature(public, canonical_bytes(manifest.body()), bytes.fromhex(manifest.signature)):
        report.problems.append("manifest: its signature does not verify (the manifest was changed)")
    else:
        report.checked.append(f"manifest signed by key {manifest.key_id}")
    if archive.is_file():
        _check_archive(archive, manifest, report)
    if proof_path.is_file():
        _check_proof(proof_path, manifest, report)
    return report


def _check_archive(archive: Path, manifest: SegmentManifest, report: SegmentReport) -> None:
    if archive.name != manifest.archive.name:
        report.problems.append(f"archive is named {archive.name}, the manifest names {manifest.archive.name}")
    size, digest = file_digest(archive)
    if (size, digest) != (manifest.archive.bytes, manifest.archive.sha256):
        report.problems.append(f"archive file differs from its manifest: {size} bytes, SHA-256 {digest}; the "
                               f"manifest says {manifest.archive.bytes} bytes, {manifest.archive.sha256}")
    tally = Tally()
    line_no = 0
    try:
        for raw in _lines(archive):
            line_no += 1
            line = raw.rstrip(b"\n")
            try:
                doc = orjson.loads(line)
                seq, obs_id, digest_, received = (int(doc["seq"]), str(doc["id"]), str(doc["content_hash"]),
                                                  int(doc["received_us"]))
                recomputed = recomputed_hash(doc)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                report.problems.append(f"archive line {line_no} is not an archived observation ({exc})")
                return
            if recomputed is None:
                report.sealed_rows += 1
            elif recomputed != digest_:
                report.problems.append(f"archive line {line_no} (observation {obs_id}, seq {seq}) was changed: its "
                                       f"content hashes to {recomputed}, not its recorded {digest_}")
            if tally.last_seq is not None and seq <= tally.last_seq:
                report.problems.append(f"archive line {line_no}: seq {seq} is not after {tally.last_seq}")
            if not manifest.lo_us <= received < manifest.hi_us:
                report.problems.append(f"archive line {line_no}: ingest time {received} lies outside the "
                                       f"segment's month {manifest.period}")
            tally.add(line, seq, obs_id, digest_, received)
    except EOFError:
        report.problems.append(f"archive is truncated: the gzip stream ends after {line_no} line(s) without its "
                               "end marker")
        return
    except (OSError, zlib.error) as exc:
        report.problems.append(f"archive is corrupted after {line_no} line(s): {exc}")
        return
    report.count = tally.content.count
    facts = {"count": (tally.content.count, manifest.count), "first_seq": (tally.first_seq, manifest.first_seq),
             "last_seq": (tally.last_seq, manifest.last_seq),
             "first_received_us": (tally.first_received_us, manifest.first_received_us),
             "last_received_us": (tally.last_received_us, manifest.last_received_us),
             "content_root": (tally.content.root().hex(), manifest.content_root),
             "rows_root": (tally.rows.root().hex(), manifest.rows_root)}
    wrong = [f"{k}: the archive gives {got}, the manifest says {want}" for k, (got, want) in facts.items()
             if got != want]
    if wrong:
        report.problems.append("archive does not match its manifest — " + "; ".join(wrong))
    else:
        report.checked.append(f"{tally.content.count} observation(s): count, seq and time range, content root and "
                              "rows root recomputed and equal to the manifest's")


def _check_proof(proof_path: Path, manifest: SegmentManifest, report: SegmentReport) -> None:
    try:
        bundle = orjson.loads(proof_path.read_bytes())
        proved = verify_bundle(bundle)
    except (orjson.JSONDecodeError, KnhkError) as exc:
        report.problems.append(f"proof bundle: {exc.message if isinstance(exc, KnhkError) else exc}")
        return
    entry = bundle["entry"]
    data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
    report.ledger = {"log": proved["log"], "seq": proved["seq"], "id": proved["id"], "tree_size": proved["tree_size"],
                     "root_hash": proved["root_hash"], "key_id": proved["key_id"]}
    if proved["kind"] != ARCHIVED_KIND or entry.get("subject") != manifest.segment:
        report.problems.append(f"proof bundle proves entry {proved['seq']} ({proved['kind']}, subject "
                               f"{entry.get('subject')}), not the {ARCHIVED_KIND} entry of {manifest.segment}")
    elif data.get("manifest_sha256") != manifest.digest():
        report.problems.append(f"the ledger entry records manifest SHA-256 {data.get('manifest_sha256')}, the "
                               f"manifest is {manifest.digest()}")
    elif bundle.get("public_key") != manifest.public_key:
        report.problems.append("the manifest is signed by another key than the ledger entry")
    else:
        report.checked.append(f"manifest is entry {proved['seq']} of log {proved['log']}, included in its signed "
                              f"checkpoint of size {proved['tree_size']}")
