"""Retention of observations (SPEC §11; ``knhk archive run``): archive, record, then drop whole months.

For every month of ingest (a partition, :mod:`knhk.observations.partitions`) that ended at least the retention
(``KNHK_RETENTION_DAYS``, 90) before ``now``, in order:

1. its rows are read in seq order from one consistent snapshot and written to ``<segment>.jsonl.gz`` (synced);
2. the segment manifest (:mod:`knhk.observations.archive`) is signed with the ledger's active key and written;
3. the ``observations.archived`` receipt (manifest digest, count, roots) is appended to the ``receipts`` log, and
   its offline proof bundle (inclusion in a signed checkpoint) is written next to the archive;
4. in one transaction the segment is registered in ``observation_segments`` and the partition dropped whole:
   PostgreSQL ``knhk_drop_observation_partition`` (DETACH, row count and seq range equal to the segment's,
   DROP; it refuses a segment without its ledger entry); SQLite deletes the month's rows, which the DELETE
   trigger allows only inside a registered segment, and the count must equal the segment's.

Each step is safe to repeat: a run that stopped half-way is finished by the next (the files are rewritten
identically, the receipt of a segment is found by its subject and not written twice). Nothing but observation
rows goes: receipts, audit entries, evidence sets, observation ids and the PHI data keys stay.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from knhk.errors import ConflictError, IntegrityError, KnhkError, UsageError
from knhk.ledger import receipts
from knhk.ledger.keyring import Keyring
from knhk.ledger.ledger import Ledger
from knhk.observations import archive as fmt
from knhk.observations import partitions
from knhk.observations.partitions import Month
from knhk.observations.store import COLUMNS
from knhk.proof.canonical import canonical_bytes
from knhk.proof.entry import Entry
from knhk.storage.database import Connection, Database

log = logging.getLogger("knhk.observations")

DAY_US = 86_400 * 1_000_000
_PAGE = 5000


@dataclass
class ArchivedMonth:
    period: str
    segment: str
    count: int
    archive: str
    ledger_seq: int
    dropped: bool

    def to_json(self) -> dict[str, Any]:
        return {"period": self.period, "segment": self.segment, "count": self.count, "archive": self.archive,
                "ledger_seq": self.ledger_seq, "dropped": self.dropped}


@dataclass
class RetentionReport:
    now_us: int
    retention_days: int
    cutoff_us: int
    archived: list[ArchivedMonth] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # months still within the retention
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"now_us": self.now_us, "retention_days": self.retention_days, "cutoff_us": self.cutoff_us,
                "dry_run": self.dry_run, "archived": [a.to_json() for a in self.archived], "kept": self.kept}


def _rows(conn: Connection, month: Month) -> Iterator[tuple[Any, ...]]:
    after = -1
    while True:
        page = conn.fetchall(f"SELECT {COLUMNS} FROM observations WHERE received_us >= ? AND received_us < ?"
                             " AND seq > ? ORDER BY seq LIMIT ?", (month.lo_us, month.hi_us, after, _PAGE))
        if not page:
            return
        for row in page:
            yield tuple(row)
        after = int(page[-1][0])


def segments(conn: Connection) -> list[dict[str, Any]]:
    """The registered (archived and dropped) segments, oldest month first."""
    rows = conn.fetchall("SELECT id, period, lo_us, hi_us, count, first_seq, last_seq, merkle_root, manifest_sha256,"
                         " ledger_log, ledger_seq, archive, created_us FROM observation_segments ORDER BY lo_us, id")
    names = ("segment", "period", "lo_us", "hi_us", "count", "first_seq", "last_seq", "content_root",
             "manifest_sha256", "ledger_log", "ledger_seq", "archive", "created_us")
    return [dict(zip(names, r, strict=True)) for r in rows]


class Retention:
    """Archives and drops the months of observations older than the retention."""

    def __init__(self, db: Database, ledger: Ledger, keyring: Keyring, archive_dir: Path) -> None:
        self.db = db
        self.ledger = ledger
        self.keyring = keyring
        self.archive_dir = archive_dir

    def run(self, now_us: int, retention_days: int, *, dry_run: bool = False) -> RetentionReport:
        if retention_days < 1:
            raise UsageError("the retention must be at least one day")
        cutoff = now_us - retention_days * DAY_US
        report = RetentionReport(now_us, retention_days, cutoff, dry_run=dry_run)
        with self.db.connection() as conn:
            months = partitions.stored_months(conn)
        for month in months:
            if month.hi_us > cutoff:
                report.kept.append(month.period)
            elif dry_run:
                with self.db.connection() as conn:
                    row = conn.fetchone("SELECT COUNT(*) FROM observations WHERE received_us >= ? AND received_us < ?",
                                        (month.lo_us, month.hi_us))
                report.archived.append(ArchivedMonth(month.period, "", int(row[0]) if row else 0, "", -1, False))
            else:
                report.archived.append(self.archive_month(month, now_us))
        return report

    def archive_month(self, month: Month, now_us: int) -> ArchivedMonth:
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.archive_dir / f".observations-{month.period}.{os.getpid()}.jsonl.gz.tmp"
        tally = fmt.Tally()
        try:
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz, \
                    self.db.snapshot() as conn:
                for row in _rows(conn, month):
                    line = fmt.row_line(row)
                    gz.write(line + b"\n")
                    tally.add(line, int(row[0]), str(row[1]), str(row[8]), int(row[5]))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            root = tally.content.root().hex()
            segment = f"observations-{month.period}-{root[:12]}"
            archive_path = self.archive_dir / (segment + fmt.ARCHIVE_SUFFIX)
            os.replace(tmp, archive_path)
        finally:
            tmp.unlink(missing_ok=True)
        fmt.sync_dir(self.archive_dir)
        _, manifest_path, proof_path = fmt.paths(archive_path)
        entry = self._entry_of(segment)
        manifest = fmt.read_manifest(manifest_path) if entry is not None and manifest_path.is_file() else None
        if manifest is None:
            size, digest = fmt.file_digest(archive_path)
            key = self.keyring.signing_key(self.keyring.ensure_active())
            manifest = fmt.sign_manifest({
                "format": fmt.FORMAT, "type": "knhk.observations.segment", "segment": segment,
                "period": month.period, "lo_us": month.lo_us, "hi_us": month.hi_us, "count": tally.content.count,
                "first_seq": tally.first_seq, "last_seq": tally.last_seq,
                "first_received_us": tally.first_received_us, "last_received_us": tally.last_received_us,
                "archive": {"name": archive_path.name, "compression": "gzip", "bytes": size, "sha256": digest},
                "content_scheme": fmt.CONTENT_SCHEME, "content_root": root, "rows_scheme": fmt.ROWS_SCHEME,
                "rows_root": tally.rows.root().hex(), "created_us": now_us}, key)
            fmt.write_atomic(manifest_path, canonical_bytes(manifest.model_dump()))
        if entry is None:
            entry = self.ledger.append(receipts.observations_archived(
                segment=segment, period=month.period, count=manifest.count, first_seq=manifest.first_seq,
                last_seq=manifest.last_seq, lo_us=month.lo_us, hi_us=month.hi_us, content_root=root,
                rows_root=manifest.rows_root, archive_sha256=manifest.archive.sha256,
                manifest_sha256=manifest.digest()))
        elif entry.data.get("manifest_sha256") != manifest.digest():
            raise IntegrityError(f"segment {segment}: the manifest on disk is not the one its ledger entry "
                                 f"{entry.seq} records; restore it from a copy before archiving again")
        fmt.write_atomic(proof_path, canonical_bytes(self.ledger.prove(receipts.RECEIPTS, entry.seq)))
        dropped = self._drop(month, manifest, entry, archive_path.name, now_us)
        log.info("observations of %s archived in segment %s (%d rows, receipt %d)", month.period, segment,
                 manifest.count, entry.seq)
        return ArchivedMonth(month.period, segment, manifest.count, str(archive_path), entry.seq, dropped)

    def _entry_of(self, segment: str) -> Entry | None:
        found = self.ledger.entries(receipts.RECEIPTS, kind=receipts.OBSERVATIONS_ARCHIVED, subject=segment,
                                    limit=1)
        return found[0] if found else None

    def _drop(self, month: Month, manifest: fmt.SegmentManifest, entry: Entry, archive: str, now_us: int) -> bool:
        with self.db.transaction() as conn:
            if conn.fetchone("SELECT 1 FROM observation_segments WHERE id=?", (manifest.segment,)):
                return False  # registered (and dropped) by an earlier run
            conn.execute(
                "INSERT INTO observation_segments (id, period, lo_us, hi_us, count, first_seq, last_seq, merkle_root,"
                " manifest_sha256, ledger_log, ledger_seq, archive, created_us) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (manifest.segment, month.period, month.lo_us, month.hi_us, manifest.count, manifest.first_seq,
                 manifest.last_seq, manifest.content_root, manifest.digest(), receipts.RECEIPTS, entry.seq, archive,
                 now_us))
            if conn.dialect == "postgresql":
                conn.fetchone("SELECT knhk_drop_observation_partition(?)", (manifest.segment,))
                return True
            if manifest.count == 0:
                return True
            deleted = conn.execute("DELETE FROM observations WHERE received_us >= ? AND received_us < ? AND seq <= ?",
                                   (month.lo_us, month.hi_us, manifest.last_seq))
            if deleted != manifest.count:
                raise ConflictError(f"month {month.period} holds {deleted} rows up to seq {manifest.last_seq}, its "
                                    f"archived segment {manifest.count}: nothing was dropped; run the archive again")
            return True


def archived_in(conn: Connection, ids: list[str], seqs: list[int]) -> dict[str, str]:
    """The archived segment of each of these observations that is no longer in the store, by id (``ids``, located
    through ``observation_ids``) or by ``"seq N"`` (``seqs``, located by the segments' seq ranges)."""
    found: dict[str, str] = {}
    known = segments(conn)
    if not known:
        return found
    located: list[tuple[str, int, int | None]] = [(f"seq {s}", int(s), None) for s in seqs]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.fetchall(f"SELECT id, seq, received_us FROM observation_ids WHERE id IN ({marks})", chunk)
        located.extend((str(i), int(s), int(r)) for i, s, r in rows)
    for name, seq, received in located:
        for seg in known:
            if seg["count"] and seg["first_seq"] <= seq <= seg["last_seq"] and (
                    received is None or seg["lo_us"] <= received < seg["hi_us"]):
                found[name] = str(seg["segment"])
                break
    return found


def archived_hashes(ledger: Ledger, archive_dir: Path, segment: dict[str, Any],
                    wanted: set[str]) -> dict[str, tuple[str, str]] | None:
    """(id, content hash) of the ``wanted`` members (ids, or ``"seq N"``) read from a segment's archive file, once
    the file is shown to be the one its ledger entry records (manifest digest in the receipt, file digest and
    signature in the manifest); None when the archive is not at hand or not that one."""
    path = archive_dir / str(segment["archive"])
    _, manifest_path, _ = fmt.paths(path)
    if not path.is_file() or not manifest_path.is_file():
        return None
    try:
        manifest = fmt.read_manifest(manifest_path)
        entry = ledger.entry(str(segment["ledger_log"]), int(segment["ledger_seq"]))
    except (fmt.FormatError, KnhkError):
        return None
    if entry.data.get("manifest_sha256") != manifest.digest() or not fmt.signed(manifest) or (
            fmt.file_digest(path) != (manifest.archive.bytes, manifest.archive.sha256)):
        return None
    out: dict[str, tuple[str, str]] = {}
    with gzip.open(path, "rb") as fh:
        for raw in fh:
            doc = orjson.loads(raw)
            for name in (str(doc["id"]), f"seq {doc['seq']}"):
                if name in wanted:
                    out[name] = (str(doc["id"]), str(doc["content_hash"]))
    return out
