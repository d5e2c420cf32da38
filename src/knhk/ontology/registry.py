"""The snapshot registry: the version DAG of every sector's Σ and its one current pointer (SPEC §4).

- ``store`` is Q1's guard: an id is content-addressed, so re-storing it with other content, parent or sector
  raises :class:`ImmutableError`; an identical re-store is a no-op. A parent must be stored first, so the DAG
  is acyclic by construction.
- ``promote`` and ``rollback`` are compare-and-set moves of the pointer (on its snapshot *and* version). The
  move, its history row and its receipt commit in one transaction: the move runs as the ledger draft's hook
  inside the sequencer's transaction (:mod:`knhk.ledger.sequencer`). An audit entry follows.
- ``current`` reads the sector's pointer (one primary-key row) from the database on every call and finds the
  snapshot by id in the cache, so no worker or replica ever answers an old current snapshot after another one
  promoted: the derived results (content, schema, exports, diffs) are cached by snapshot id only
  (:mod:`knhk.ops.cache`: L1 in-process, L2 Redis), and an id names one content forever.
- ``gc`` deletes the *content* of old, never-promoted snapshots; their metadata rows stay forever and the
  collection is logged in ``snapshot_collections`` and a ``snapshot.collected`` receipt. The database itself
  refuses to delete the content of any snapshot a pointer ever named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson
from typing_extensions import TypedDict

from knhk.audit.log import AuditLog
from knhk.errors import (
    ConflictError,
    ImmutableError,
    InvalidInputError,
    KnhkError,
    NotFoundError,
    RejectedError,
    StaleBaseError,
    VerificationError,
)
from knhk.ledger import receipts
from knhk.ledger.ledger import Ledger
from knhk.ontology import store as sql
from knhk.ontology.diff import Diff, diff
from knhk.ontology.extract import extract_schema
from knhk.ontology.rdf import Triple
from knhk.ontology.schema import SectorSchema
from knhk.ontology.snapshot import (
    Snapshot,
    SnapshotInfo,
    canonical_content,
    check_sector,
    check_snapshot_id,
    content_digest,
    make_snapshot,
    snapshot_id,
)
from knhk.ops.cache import TEXT, Codec, DerivedCache
from knhk.ops.clock import SYSTEM_CLOCK, Clock, format_rfc3339
from knhk.proof.entry import Entry
from knhk.storage.database import Connection, Database

InfoList = list[SnapshotInfo]
CURRENT = "current"  # accepted for a snapshot id, with a sector
IdList = list[str]
HistoryList = list[sql.HistoryRow]


@dataclass(frozen=True)
class SnapshotPage:
    items: InfoList
    next_cursor: str | None


class PointerMoveView(TypedDict):
    """A pointer move as the API and the CLI answer it (:meth:`PointerMove.to_json`)."""

    sector: str
    snapshot_id: str
    previous_id: str | None
    version: int
    action: str
    forced: bool
    noop: bool
    receipt_id: str | None
    receipt_seq: int | None


@dataclass(frozen=True)
class PointerMove:
    """The outcome of a promotion or rollback (``noop``: the snapshot was already current)."""

    sector: str
    snapshot_id: str
    previous_id: str | None
    version: int
    action: str  # promote | rollback | root
    forced: bool = False
    receipt: Entry | None = None
    noop: bool = False

    def to_json(self) -> PointerMoveView:
        return {"sector": self.sector, "snapshot_id": self.snapshot_id, "previous_id": self.previous_id,
                "version": self.version, "action": self.action, "forced": self.forced, "noop": self.noop,
                "receipt_id": None if self.receipt is None else self.receipt.id,
                "receipt_seq": None if self.receipt is None else self.receipt.seq}


class _AlreadyInstalled(KnhkError):
    """The sector got a pointer between our check and our insert (another process installed it)."""


def _snapshot_size(snapshot: Snapshot) -> int:
    """An estimate of a snapshot's bytes in memory (its terms plus the frozenset and tuple overhead)."""
    return 512 + sum(len(s) + len(p) + len(o) + 250 for s, p, o in snapshot.triples)


def _schema_size(schema: SectorSchema) -> int:
    """An estimate of a schema's bytes in memory (a read model of a few kilobytes per declared type)."""
    return 2048 + 2048 * (len(schema.event_types) + len(schema.guards))


def _encode_diff(d: Diff) -> bytes:
    return orjson.dumps([d.added, d.removed])


def _decode_diff(data: bytes) -> Diff:
    added, removed = orjson.loads(data)
    return Diff(tuple((s, p, o) for s, p, o in added), tuple((s, p, o) for s, p, o in removed))


_DIFF: Codec[Diff] = Codec(_encode_diff, _decode_diff)


def _parse_content(canonical: bytes) -> frozenset[Triple]:
    """Split stored canonical N-Triples (verified by digest) into terms: subject and predicate are IRIs
    without spaces, so the object is the rest of the line."""
    out: list[Triple] = []
    for line in canonical.decode().splitlines():
        subject, predicate, obj = line[:-2].split(" ", 2)
        out.append((subject, predicate, obj))
    return frozenset(out)


class SnapshotRegistry:
    """Snapshots, pointers and history of every sector, over one database, ledger and audit log."""

    def __init__(self, db: Database, ledger: Ledger, audit: AuditLog, clock: Clock = SYSTEM_CLOCK, *,
                 gc_min_age_s: int = 86_400, cache: DerivedCache | None = None) -> None:
        self.db = db
        self.ledger = ledger
        self.audit = audit
        self.clock = clock
        self.gc_min_age_s = gc_min_age_s
        self.cache = cache if cache is not None else DerivedCache(10 * 1024 * 1024)

    # -- storing and reading ----------------------------------------------------------------------------
    def store(self, snapshot: Snapshot) -> Snapshot:
        """Store a snapshot (Q1: ids are immutable). Returns the stored snapshot (the earlier one, with its
        own origin and time, when identical content under the same parent was stored before)."""
        canonical = canonical_content(snapshot.triples)
        digest = content_digest(canonical)
        if digest != snapshot.content_digest or snapshot_id(snapshot.parent, canonical) != snapshot.id \
                or snapshot.triple_count != len(snapshot.triples):
            raise InvalidInputError(f"snapshot {snapshot.id} does not match its content: its id, digest or "
                                    "triple count was not computed from its triples")
        blob = sql.compress(canonical)
        with self.db.transaction() as conn:
            existing = sql.get_info(conn, snapshot.id)
            if existing is None:
                self._check_parent(conn, snapshot)
                if not sql.insert_snapshot(conn, snapshot.info):
                    existing = sql.get_info(conn, snapshot.id)
            if existing is not None:
                self._check_same(existing, snapshot)
            sql.insert_content(conn, snapshot.id, blob)
        stored = snapshot if existing is None else Snapshot(**{**existing.__dict__, "triples": snapshot.triples})
        self._remember(stored)
        return stored

    @staticmethod
    def _check_parent(conn: Connection, snapshot: Snapshot) -> None:
        if snapshot.parent is None:
            return
        parent = sql.get_info(conn, snapshot.parent)
        if parent is None:
            raise NotFoundError(f"parent snapshot {snapshot.parent} is not stored; store it first")
        if parent.sector != snapshot.sector:
            raise InvalidInputError(
                f"parent snapshot {snapshot.parent} belongs to sector {parent.sector}, not {snapshot.sector}"
            )
        if sql.get_content(conn, snapshot.parent) is None:
            raise InvalidInputError(f"parent snapshot {snapshot.parent} was garbage-collected; rebase on the "
                                    "current snapshot")

    @staticmethod
    def _check_same(existing: SnapshotInfo, snapshot: Snapshot) -> None:
        for name in ("sector", "parent", "content_digest"):
            if getattr(existing, name) != getattr(snapshot, name):
                raise ImmutableError(
                    f"snapshot {snapshot.id} is already stored with another {name.replace('_', ' ')} "
                    f"({getattr(existing, name)!r}, not {getattr(snapshot, name)!r}); snapshots are immutable (Q1)"
                )

    def _remember(self, snapshot: Snapshot) -> None:
        self.cache.remember("snapshot", snapshot.id, snapshot, _snapshot_size(snapshot))

    def resolve(self, id_or_prefix: str, sector: str | None = None) -> str:
        """A full snapshot id from an id, a unique prefix of at least 6 hex characters, or ``current`` (the
        current snapshot of ``sector``, which must then be given)."""
        text = id_or_prefix.strip().lower()
        if text == CURRENT:
            if sector is None:
                raise InvalidInputError("'current' names a sector's current snapshot: give the sector "
                                        "(--sector S, or ?sector=S on the API)")
            snapshot = self.refresh(sector)
            if snapshot is None:
                raise NotFoundError(f"sector {sector!r} has no current snapshot; installed: "
                                    f"{', '.join(self.sectors())}")
            return snapshot.id
        if len(text) == 64:
            return check_snapshot_id(text)
        if len(text) < 6 or any(c not in "0123456789abcdef" for c in text):
            raise InvalidInputError(f"{id_or_prefix!r} is neither a snapshot id nor a prefix of ≥ 6 hex digits")
        with self.db.connection() as conn:
            found = sql.find_by_prefix(conn, text)
        if not found:
            raise NotFoundError(f"no snapshot id starts with {text}")
        if len(found) > 1:
            raise InvalidInputError(f"snapshot prefix {text} is ambiguous; give more characters")
        return found[0]

    def info(self, snapshot_id: str) -> SnapshotInfo:
        check_snapshot_id(snapshot_id)
        with self.db.connection() as conn:
            found = sql.get_info(conn, snapshot_id)
        if found is None:
            raise NotFoundError(f"no snapshot has id {snapshot_id}")
        return found

    def get(self, snapshot_id: str) -> Snapshot:
        """A stored snapshot with its content (verified against its digest; L1-cached by id)."""
        check_snapshot_id(snapshot_id)
        return self.cache.get("snapshot", snapshot_id, lambda: self._load(snapshot_id), size=_snapshot_size)

    def _load(self, snapshot_id: str) -> Snapshot:
        with self.db.connection() as conn:
            found = sql.get_info(conn, snapshot_id)
            blob = sql.get_content(conn, snapshot_id) if found is not None else None
            collected = sql.collected_at(conn, snapshot_id) if found is not None and blob is None else None
        if found is None:
            raise NotFoundError(f"no snapshot has id {snapshot_id}")
        if blob is None:
            when = f" at {format_rfc3339(collected)}" if collected is not None else ""
            raise NotFoundError(f"snapshot {snapshot_id} was never promoted and its content was "
                                f"garbage-collected{when}")
        canonical = sql.decompress(blob)
        if hashlib.sha256(canonical).hexdigest() != found.content_digest:
            raise VerificationError(f"stored content of snapshot {snapshot_id} does not match its content digest")
        return Snapshot(**{**found.__dict__, "triples": _parse_content(canonical)})

    def list(self, sector: str | None = None, limit: int = 100, cursor: str | None = None) -> SnapshotPage:
        """Snapshots, newest first, a page at a time (``cursor`` from the previous page)."""
        if sector is not None:
            check_sector(sector)
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be between 1 and 1000")
        before: tuple[int, str] | None = None
        if cursor:
            created, _, last_id = cursor.partition(".")
            if not created.isdigit():
                raise InvalidInputError(f"cursor {cursor!r} is not one this server issued")
            before = (int(created), check_snapshot_id(last_id, "cursor"))
        with self.db.connection() as conn:
            items = sql.list_infos(conn, sector, limit + 1, before)
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = f"{items[-1].created_us}.{items[-1].id}"
        return SnapshotPage(items, next_cursor)

    def lineage(self, snapshot_id: str) -> InfoList:
        """The snapshot and its ancestors up to the root, nearest first."""
        check_snapshot_id(snapshot_id)
        with self.db.connection() as conn:
            chain = sql.lineage(conn, snapshot_id)
        if not chain:
            raise NotFoundError(f"no snapshot has id {snapshot_id}")
        return chain

    def children(self, snapshot_id: str) -> InfoList:
        self.info(snapshot_id)
        with self.db.connection() as conn:
            return sql.children(conn, snapshot_id)

    def diff(self, a: str, b: str) -> Diff:
        """Triples added and removed from ``a`` to ``b`` (cached by both ids, L1 and L2)."""
        check_snapshot_id(a)
        check_snapshot_id(b)
        return self.cache.get("diff", f"{a}:{b}", lambda: diff(self.get(a).triples, self.get(b).triples),
                              codec=_DIFF)

    def export(self, snapshot_id: str, fmt: str = "turtle", full: bool = False) -> str:
        """Turtle or N-Triples of a snapshot (cached by id, format and fullness, L1 and L2)."""
        check_snapshot_id(snapshot_id)
        return self.cache.get("export", f"{snapshot_id}:{fmt}:{int(full)}",
                              lambda: self.get(snapshot_id).export(fmt, full=full), codec=TEXT)

    def history(self, sector: str, limit: int = 1000) -> HistoryList:
        check_sector(sector)
        with self.db.connection() as conn:
            return sql.history(conn, sector, limit)

    # -- the current pointer ----------------------------------------------------------------------------
    def sectors(self) -> IdList:
        """The sectors that have a current snapshot (an installed sector pack), sorted."""
        with self.db.connection() as conn:
            return sorted(p.sector for p in sql.all_pointers(conn))

    def current(self, sector: str) -> Snapshot | None:
        """The sector's current snapshot (``None``: no snapshot installed): its pointer read from the database
        (another worker or replica may have moved it), its content from the id-keyed cache."""
        return self.refresh(sector)

    def current_of(self, sectors: Iterable[str]) -> dict[str, Snapshot | None]:
        """The current snapshots of several sectors (``None``: none installed), their pointers read in one
        query (a batch of observations of three sectors costs one round trip, not three)."""
        wanted = sorted(set(sectors))
        for sector in wanted:
            check_sector(sector)
        with self.db.connection() as conn:
            pointers = {p.sector: p for p in sql.all_pointers(conn)}
        return {sector: self.get(pointers[sector].snapshot_id) if sector in pointers else None
                for sector in wanted}

    def refresh(self, sector: str | None = None) -> Snapshot | None:
        """Read the pointer of one sector from the database and its snapshot by id; without a sector, load
        every sector's current snapshot into the cache (start-up)."""
        if sector is None:
            with self.db.connection() as conn:
                pointers = sql.all_pointers(conn)
            for pointer in pointers:
                self.schema(pointer.snapshot_id)
            return None
        check_sector(sector)
        with self.db.connection() as conn:
            found = sql.get_pointer(conn, sector)
        return None if found is None else self.get(found.snapshot_id)

    def schema(self, snapshot_id: str) -> SectorSchema:
        """The read model of a snapshot, extracted once per snapshot id (L1-cached)."""
        def extract() -> SectorSchema:
            snapshot = self.get(snapshot_id)
            return extract_schema(snapshot.sector, snapshot.id, snapshot.triples)

        return self.cache.get("schema", snapshot_id, extract, size=_schema_size)

    def current_schema(self, sector: str) -> SectorSchema:
        snapshot = self.current(sector)
        if snapshot is None:
            raise NotFoundError(f"sector {sector} has no current snapshot; load its sector pack first")
        return self.schema(snapshot.id)

    # -- moves of the pointer ---------------------------------------------------------------------------
    def install_root(self, sector: str, triples: Iterable[Triple], actor: str) -> Snapshot:
        """Store a sector pack's root snapshot and point the sector at it, unless it already has a pointer."""
        check_sector(sector)
        with self.db.connection() as conn:
            pointer = sql.get_pointer(conn, sector)
        if pointer is not None:
            existing = self.refresh(sector)
            assert existing is not None
            return existing
        root = self.store(make_snapshot(sector, None, triples, origin="root", created_us=self.clock.now_us()))
        pseudonym = self.audit.subjects.pseudonym(actor)

        def hook(conn: Connection) -> None:
            now = self.clock.now_us()
            if not sql.insert_pointer(conn, sector, root.id, now):
                raise _AlreadyInstalled(f"sector {sector} already has a current snapshot")
            sql.insert_history(conn, sql.HistoryRow(sector, 0, root.id, None, "root", False, None, pseudonym, now))

        draft = receipts.snapshot_root(sector=sector, snapshot_id=root.id, content_digest=root.content_digest,
                                       triple_count=root.triple_count)
        try:
            entry = self.ledger.append(draft, hook=hook)
        except _AlreadyInstalled:
            existing = self.refresh(sector)
            assert existing is not None
            return existing
        self.audit.record(actor, "snapshot.root", resource=f"snapshot/{root.id}", sector=sector,
                          metadata={"receipt_id": entry.id})
        return root

    def _pointer(self, sector: str) -> sql.Pointer:
        with self.db.connection() as conn:
            pointer = sql.get_pointer(conn, sector)
        if pointer is None:
            raise NotFoundError(f"sector {sector} has no current snapshot; load its sector pack first")
        return pointer

    def _check_validation(self, sector: str, snapshot_id: str, receipt_id: str | None) -> None:
        if receipt_id is None:
            raise RejectedError(f"promoting {snapshot_id} needs a passing validation receipt "
                                "(proposal.validated, outcome approved) for it")
        try:
            entry = self.ledger.entry_by_id(receipt_id)
        except NotFoundError:
            raise RejectedError(f"validation receipt {receipt_id} does not exist") from None
        data = entry.data or {}
        if entry.log != receipts.RECEIPTS or entry.kind != receipts.PROPOSAL_VALIDATED:
            raise RejectedError(f"receipt {receipt_id} is a {entry.log} {entry.kind} entry, "
                                "not a proposal.validated receipt")
        if entry.outcome != "approved":
            raise RejectedError(f"validation receipt {receipt_id} has outcome {entry.outcome!r}, not 'approved'")
        if data.get("snapshot_id") != snapshot_id:
            raise RejectedError(f"validation receipt {receipt_id} validated snapshot "
                                f"{data.get('snapshot_id')}, not {snapshot_id}")
        if entry.sector not in (None, sector):
            raise RejectedError(f"validation receipt {receipt_id} is for sector {entry.sector}")

    def promote(self, sector: str, snapshot_id: str, *, actor: str, expected_current: str | None = None,
                validation_receipt_id: str | None = None, force: bool = False,
                reason: str | None = None, klass: Mapping[str, str] | None = None) -> PointerMove:
        """Make a validated child of the current snapshot current (compare-and-set; SPEC §4).

        Raises :class:`StaleBaseError` when the candidate's parent is not current (rebase and re-validate),
        :class:`RejectedError` without a passing validation receipt (unless ``force``). Promoting the
        snapshot that is already current is a no-op.
        """
        check_sector(sector)
        snapshot = self.get(check_snapshot_id(snapshot_id))
        if snapshot.sector != sector:
            raise InvalidInputError(f"snapshot {snapshot_id} belongs to sector {snapshot.sector}, not {sector}")
        pointer = self._pointer(sector)
        if pointer.snapshot_id == snapshot_id:
            return PointerMove(sector, snapshot_id, snapshot.parent, pointer.version, "promote", noop=True)
        resource = f"snapshot/{snapshot_id}"
        try:
            if expected_current is not None and expected_current != pointer.snapshot_id:
                raise StaleBaseError(f"the current snapshot of {sector} is {pointer.snapshot_id}, "
                                     f"not the expected {expected_current}")
            if snapshot.parent != pointer.snapshot_id:
                raise StaleBaseError(
                    f"snapshot {snapshot_id} is based on {snapshot.parent}, but the current snapshot of {sector} "
                    f"is {pointer.snapshot_id}; rebase the change and validate it again"
                )
            if not force:
                self._check_validation(sector, snapshot_id, validation_receipt_id)
        except (StaleBaseError, RejectedError) as exc:
            self.audit.record(actor, "snapshot.promoted", resource, "denied" if isinstance(exc, RejectedError)
                              else "failure", reason=exc.message[:4096], sector=sector)
            raise
        return self._move(sector, snapshot, pointer, action="promote", actor=actor, forced=force,
                          validation_receipt_id=validation_receipt_id, reason=reason, klass=klass)

    def rollback(self, sector: str, *, actor: str, reason: str | None = None) -> PointerMove:
        """Move the sector's pointer to the current snapshot's parent (an error at the root)."""
        check_sector(sector)
        pointer = self._pointer(sector)
        current = self.info(pointer.snapshot_id)
        if current.parent is None:
            raise InvalidInputError(f"sector {sector} is at its root snapshot {current.id}; there is no parent "
                                    "to roll back to")
        target = self.get(current.parent)
        return self._move(sector, target, pointer, action="rollback", actor=actor, forced=False,
                          validation_receipt_id=None, reason=reason)

    def _move(self, sector: str, target: Snapshot, pointer: sql.Pointer, *, action: str, actor: str,
              forced: bool, validation_receipt_id: str | None, reason: str | None,
              klass: Mapping[str, str] | None = None) -> PointerMove:
        version = pointer.version + 1
        previous = pointer.snapshot_id
        pseudonym = self.audit.subjects.pseudonym(actor)

        def hook(conn: Connection) -> None:
            now = self.clock.now_us()
            if not sql.move_pointer(conn, sector, previous, pointer.version, target.id, now):
                raise StaleBaseError(f"the current snapshot of {sector} changed while moving it to {target.id}; "
                                     "rebase and retry")
            if sql.get_content(conn, target.id) is None:
                raise NotFoundError(f"snapshot {target.id} was garbage-collected; it cannot become current")
            sql.insert_history(conn, sql.HistoryRow(sector, version, target.id, previous, action, forced,
                                                    validation_receipt_id, pseudonym, now))

        kind = receipts.pointer_kind(action)
        draft = receipts.pointer_moved(action=action, sector=sector, snapshot_id=target.id, previous=previous,
                                       version=version, forced=forced, content_digest=target.content_digest,
                                       validation_receipt_id=validation_receipt_id, reason=reason, klass=klass)
        try:
            entry = self.ledger.append(draft, hook=hook)
        except (StaleBaseError, NotFoundError) as exc:
            self.audit.record(actor, kind, f"snapshot/{target.id}", "failure", reason=exc.message[:4096],
                              sector=sector)
            raise
        self.audit.record(actor, kind, f"snapshot/{target.id}", sector=sector, reason=reason,
                          metadata={"previous": previous, "version": version, "forced": forced,
                                    "receipt_id": entry.id})
        return PointerMove(sector, target.id, previous, version, action, forced, entry)

    # -- garbage collection -----------------------------------------------------------------------------
    def gc(self, sector: str | None = None, *, min_age_s: int | None = None, actor: str = "system") -> IdList:
        """Delete the content of unpromoted orphans older than ``min_age_s`` (default: the registry's), whose
        descendants are all collectable too. Promoted snapshots are never touched. Returns what went."""
        age = self.gc_min_age_s if min_age_s is None else min_age_s
        if age < 0:
            raise InvalidInputError("the gc minimum age must not be negative")
        with self.db.connection() as conn:
            sectors = [check_sector(sector)] if sector is not None else sql.sectors_with_snapshots(conn)
        collected: IdList = []
        for name in sectors:
            collected.extend(self._gc_sector(name, age, actor))
        return collected

    def _gc_candidates(self, sector: str, age: int) -> IdList:
        cutoff = self.clock.now_us() - age * 1_000_000
        with self.db.connection() as conn:
            edges = sql.edges_with_content(conn, sector)
            promoted = sql.promoted_ids(conn, sector)
            pointer = sql.get_pointer(conn, sector)
        current = pointer.snapshot_id if pointer is not None else None
        candidates = {sid for sid, _, created in edges
                      if sid not in promoted and sid != current and created < cutoff}
        kids: dict[str, list[str]] = {}
        for sid, parent, _ in edges:
            if parent is not None:
                kids.setdefault(parent, []).append(sid)
        changed = True
        while changed:  # keep a snapshot while any stored child of it stays
            changed = False
            for sid in sorted(candidates):
                if any(kid not in candidates for kid in kids.get(sid, ())):
                    candidates.discard(sid)
                    changed = True
        return sorted(candidates)

    def _gc_sector(self, sector: str, age: int, actor: str) -> IdList:
        ids = self._gc_candidates(sector, age)
        if not ids:
            return []

        def hook(conn: Connection) -> None:
            now = self.clock.now_us()
            for sid in ids:
                if sql.ever_promoted(conn, sid):
                    raise ConflictError(f"snapshot {sid} was promoted while gc ran; nothing was collected")
                if sql.delete_content(conn, sid) == 0:
                    raise ConflictError(f"snapshot {sid} was collected by another process; nothing was collected")
                sql.insert_collection(conn, sid, sector, now)

        draft = receipts.snapshot_collected(sector=sector, collected=ids, min_age_s=age)
        entry = self.ledger.append(draft, hook=hook)
        self.audit.record(actor, "snapshot.collected", resource=f"sector/{sector}/snapshots", sector=sector,
                          metadata={"count": len(ids), "receipt_id": entry.id})
        for sid in ids:
            self.cache.forget("snapshot", sid)
            self.cache.forget("schema", sid)
        return ids
