"""Ingesting observations (SPEC §2): validate, deduplicate, measure conformance, store, guard, notify.

One call stores a single observation or an atomic batch of up to 10,000: every item is validated first, and
if any is invalid nothing is stored and the error names the item's index. An observation of a sector with no
installed sector pack (no current snapshot) is invalid: stored, it would never be analysed. What becomes of
each (new, a duplicate of a stored one, refused for its id or its clock skew) is the one rule of
:mod:`knhk.observations.admission`; :meth:`Ingestor.check_batch` applies it without storing anything.

The batch is written in one transaction (SQLite: ``executemany``; PostgreSQL: one set-based ``INSERT …
RETURNING``); on PostgreSQL the transaction holds the advisory lock ``knhk.observations`` so ingest sequence
numbers become visible in commit order (a cursor never skips a row) and the id lookup and insert cannot race;
SQLite's write lock does the same.

Single observations from concurrent callers are group-committed (:meth:`Ingestor.ingest`): each caller's
observation is validated in its own thread, then one writer thread stores everything waiting in one
transaction, so throughput is not bounded by one commit (and its fsync) per observation. A conflict or skew
refusal fails only its own caller; a database failure fails the whole group, and nothing of it is stored.

In the same transaction the sector's hot-path guards (and its resource-limit doctrines, sector-wide, fail
closed: :mod:`knhk.observations.limits`) — except those a granted guard relaxation switches off for the sector at
this moment (``relaxed_for``) — are evaluated on the new observations, and each violation stages a
``guard.violated`` and an ``alert.raised`` receipt committing to the observation's content in the ledger's
outbox (:mod:`knhk.ledger.outbox`); an audited ingest (``audit=True``, the application's) stages its count for
the per-minute ``observations.ingested`` audit entry there too (SPEC §9). So the observations and what is owed
for them commit together or not at all: a crash after the commit loses nothing, and a retried request (a
duplicate) owes nothing more. After the commit the ingest asks the sequencer to drain its receipts and waits
at most ``receipt_wait_s`` for them (their ids are in the result); if the ledger cannot take them then, the
call still succeeds — the observations are stored and acknowledged — with the receipts counted as pending in
the result: the sequencer of any live process drains them within its drain interval. ``on_ingested`` is then
called with the new observations (the detection engine subscribes).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from knhk.errors import (
    ConflictError,
    DependencyUnavailableError,
    InvalidInputError,
    KnhkError,
    PayloadTooLargeError,
    UsageError,
)
from knhk.ledger import receipts
from knhk.ledger.ledger import Ledger
from knhk.observations import store
from knhk.observations.admission import Admission, Label, admit, at, first_refusal, observation_label
from knhk.observations.conformance import conformance_issues
from knhk.observations.guards import GuardEvaluator, GuardViolation
from knhk.observations.limits import DoctrineLike
from knhk.observations.model import Conform, Observation, assign_seq, is_sector, parse_observation
from knhk.ontology.schema import SectorSchema
from knhk.ops import telemetry
from knhk.ops.clock import Clock
from knhk.proof.entry import Entry, EntryDraft
from knhk.proof.evidence import commit, item
from knhk.storage.database import Connection, Database, take_lock

log = logging.getLogger("knhk.observations")

MAX_BATCH = 10_000
LOCK = "knhk.observations"
INGESTED = "observations.ingested"  # the audit action of the per-minute ingest counts
AUDIT_GRACE_US = 2_000_000  # a minute's counts are drained this long after it ends (its last commits land)

SchemaLookup = Callable[[str], SectorSchema | None]
SchemasLookup = Callable[[Sequence[str]], dict[str, SectorSchema | None]]
Subscriber = Callable[[list[Observation]], None]
DoctrineLookup = Callable[[str], Sequence[DoctrineLike]]
RelaxedLookup = Callable[[str, int], frozenset[str]]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to one submitted observation."""

    observation: Observation
    duplicate: bool = False
    violations: tuple[GuardViolation, ...] = ()
    receipt_ids: tuple[str, ...] = ()
    receipts_pending: int = 0  # receipts owed (committed in the outbox) but not in the ledger yet

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.observation.id,
            "duplicate": self.duplicate,
            "conforming": self.observation.conforming,
            "issues": list(self.observation.issues),
            "skewed": self.observation.skewed,
            "violations": [v.data() for v in self.violations],
            "receipts": list(self.receipt_ids),
            "receipts_pending": self.receipts_pending,
        }


@dataclass(frozen=True, slots=True)
class _Guarded:
    """The guard violations found on observations about to be stored, with each one's sector, in order."""

    found: list[tuple[str, GuardViolation]]


@dataclass
class _Owed:
    """What one ingest transaction staged in the outbox: violations and receipt rows by observation id."""

    violations: dict[str, list[GuardViolation]]
    rows: dict[str, list[int]]

    def results(self, entries: dict[int, Entry]) -> tuple[dict[str, list[str]], dict[str, int]]:
        """Receipt ids by observation, and how many of each observation's receipts are still pending."""
        ids: dict[str, list[str]] = {}
        pending: dict[str, int] = {}
        for obs_id, rows in self.rows.items():
            ids[obs_id] = [entries[r].id for r in rows if r in entries]
            pending[obs_id] = len(rows) - len(ids[obs_id])
        return ids, pending


class Ingestor:
    """Validates, stores and guards observations for every sector of one installation."""

    def __init__(self, db: Database, ledger: Ledger, schema_for: SchemaLookup, clock: Clock,
                 on_ingested: Subscriber | None = None, doctrines_for: DoctrineLookup | None = None,
                 installed: Callable[[], Sequence[str]] | None = None,
                 relaxed_for: RelaxedLookup | None = None, receipt_wait_s: float = 2.0,
                 schemas_for: SchemasLookup | None = None) -> None:
        self.db = db
        self.ledger = ledger
        self.schema_for = schema_for
        self.schemas_for = schemas_for  # several sectors' schemas in one read (a batch's), when available
        self.clock = clock
        self.on_ingested = on_ingested
        self.doctrines_for = doctrines_for  # the sector's resource_limit doctrines hold on ingest, sector-wide
        self.installed = installed  # the installed sectors, named when an observation's sector is not one
        self.relaxed_for = relaxed_for  # guard ids a granted guard relaxation switches off (sector, now)
        self.receipt_wait_s = receipt_wait_s
        # called with the ingest time before rows of it are stored (knhk.observations.partitions: the month's
        # partition is made ahead of time; never raises)
        self.before_store: Callable[[int], None] | None = None
        self.guards = GuardEvaluator()
        self._pending: queue.SimpleQueue[tuple[Observation, bool, Future[IngestResult]]] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    def ingest(self, raw: Any, client: str | None = None, *, audit: bool = False) -> IngestResult:
        """Ingest one observation (group-committed with concurrent callers' observations). ``audit``: count it
        for the per-minute ingest audit of ``client`` (a pseudonym)."""
        obs = self._parse([raw], client, self.clock.now_us(), label=None, schemas={})[0]
        future: Future[IngestResult] = Future()
        self._ensure_writer()
        self._pending.put((obs, audit, future))
        return future.result()

    @telemetry.ingest("batch")
    def ingest_batch(self, raws: Sequence[Any], client: str | None = None, *,
                     label: Label = observation_label, backfill: bool = False,
                     audit: bool = False) -> list[IngestResult]:
        """Ingest up to 10,000 observations atomically; results are in input order. A refusal names its item
        through ``label`` (default ``observation N``); ``backfill``: recorded data (see :func:`admit`); ``audit``
        as for :meth:`ingest`."""
        self._check_size(raws)
        if not raws:
            return []
        received_us = self.clock.now_us()
        schemas = self._batch_schemas(raws)  # each sector's schema read once, for conformance and guards
        parsed = self._parse(raws, client, received_us, label=label, schemas=schemas)
        if self.before_store is not None:
            self.before_store(received_us)
        if not any(o.client_id for o in parsed):
            # server-assigned ids are new by birth: admitting them needs nothing of the store, so they are
            # admitted and guarded, their receipts and counts staged and their rows built, in the transaction
            # but before the lock is taken (the lock is held for the sequence numbers and the rows' COPY alone)
            admissions = self._admit(parsed, {}, received_us, label, backfill)
            guarded = self._guard(parsed, schemas)
            fresh = [o for o, a in zip(parsed, admissions, strict=True) if a.new]
            with self.db.transaction() as conn:
                owed = self._stage(conn, fresh, fresh if audit else [], schemas, guarded)
                rows = store.observation_rows(conn, fresh)
                take_lock(conn, LOCK)
                self._insert(conn, fresh, rows)
        else:
            with self.db.transaction(lock=LOCK) as conn:
                admissions = self._admit(parsed, self._stored(conn, parsed), received_us, label, backfill)
                fresh = self._insert(conn, [o for o, a in zip(parsed, admissions, strict=True) if a.new])
                owed = self._stage(conn, fresh, fresh if audit else [], schemas)
        receipt_ids, pending = self._after_commit(fresh, owed)
        results: list[IngestResult] = []
        no_violations: tuple[GuardViolation, ...] = ()
        by_id: dict[str, Observation] | None = None
        for index, (obs, admission) in enumerate(zip(parsed, admissions, strict=True)):
            if admission.new:  # obs is the stored observation: _insert gave it its sequence number
                found = owed.violations.get(obs.id)
                if found is None:
                    results.append(IngestResult(obs, violations=no_violations))
                else:
                    results.append(IngestResult(obs, violations=tuple(found),
                                                receipt_ids=tuple(receipt_ids.get(obs.id, ())),
                                                receipts_pending=pending.get(obs.id, 0)))
            else:
                by_id = by_id if by_id is not None else {o.id: o for o in fresh}
                results.append(IngestResult(self._earlier(index, parsed, admissions, by_id), duplicate=True))
        return results

    @staticmethod
    def _admit(parsed: list[Observation], stored: dict[str, Observation], received_us: int, label: Label,
               backfill: bool) -> list[Admission]:
        """Admit a batch (:func:`admit`); the first refusal refuses it whole."""
        admissions = admit(parsed, stored, received_us, batch=True, label=label, backfill=backfill)
        refusal = first_refusal(admissions)
        if refusal is not None:
            raise refusal
        return admissions

    def check_batch(self, raws: Sequence[Any], client: str | None = None, *,
                    label: Label = observation_label, backfill: bool = False) -> None:
        """Refuse what :meth:`ingest_batch` would refuse, storing nothing (any number of observations: the CLI
        checks a whole file before it stores its first 10,000)."""
        if not isinstance(raws, list | tuple):
            raise UsageError("a batch must be a JSON array of observations")
        received_us = self.clock.now_us()
        parsed = self._parse(raws, client, received_us, label=label, schemas={})
        with self.db.connection() as conn:
            stored = self._stored(conn, parsed)
        refusal = first_refusal(admit(parsed, stored, received_us, batch=True, label=label, backfill=backfill))
        if refusal is not None:
            raise refusal

    # -- group commit of single observations ----------------------------------------------------------
    def _ensure_writer(self) -> None:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="knhk-ingest", daemon=True)
                    self._writer.start()

    def _write_loop(self) -> None:
        while True:
            group = [self._pending.get()]
            while len(group) < MAX_BATCH:
                try:
                    group.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit_group(group)
            except BaseException as exc:  # nothing of the group was stored
                err = exc if isinstance(exc, KnhkError) else DependencyUnavailableError(f"ingest failed: {exc}")
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(err)

    @telemetry.ingest("group")
    def _commit_group(self, group: list[tuple[Observation, bool, Future[IngestResult]]]) -> None:
        received_us = self.clock.now_us()
        candidates = [obs for obs, _, _ in group]
        if self.before_store is not None:
            self.before_store(received_us)
        with self.db.transaction(lock=LOCK) as conn:
            admissions = admit(candidates, self._stored(conn, candidates), received_us, batch=False)
            fresh = self._insert(conn, [o for o, a in zip(candidates, admissions, strict=True) if a.new])
            audited = {obs.id for obs, audit, _ in group if audit}
            owed = self._stage(conn, fresh, [o for o in fresh if o.id in audited], {})
        by_id = {o.id: o for o in fresh}
        receipt_ids, pending = self._after_commit(fresh, owed)
        for index, ((obs, _, future), admission) in enumerate(zip(group, admissions, strict=True)):
            if admission.refusal is not None:
                future.set_exception(admission.refusal)
            elif not admission.new:
                future.set_result(IngestResult(self._earlier(index, candidates, admissions, by_id), duplicate=True))
            else:
                future.set_result(IngestResult(by_id[obs.id], violations=tuple(owed.violations.get(obs.id, ())),
                                               receipt_ids=tuple(receipt_ids.get(obs.id, ())),
                                               receipts_pending=pending.get(obs.id, 0)))

    # -- the steps ------------------------------------------------------------------------------------
    @staticmethod
    def _check_size(raws: Sequence[Any]) -> None:
        if not isinstance(raws, list | tuple):
            raise UsageError("a batch must be a JSON array of observations")
        if len(raws) > MAX_BATCH:
            raise PayloadTooLargeError(f"a batch holds at most {MAX_BATCH} observations, got {len(raws)}")

    def _batch_schemas(self, raws: Sequence[Any]) -> dict[str, SectorSchema | None]:
        """The current schemas of the sectors a batch names, read together (when the lookup allows it); a
        sector that is no slug is left to the item's validation."""
        if self.schemas_for is None:
            return {}
        sectors = {raw.get("sector") for raw in raws if isinstance(raw, dict)}
        named = [s for s in sectors if isinstance(s, str) and is_sector(s)]
        return dict(self.schemas_for(named)) if named else {}

    def _schema(self, sector: str, schemas: dict[str, SectorSchema | None]) -> SectorSchema | None:
        """The sector's current schema, read once per batch (``schemas`` remembers it for the batch)."""
        if sector not in schemas:
            schemas[sector] = self.schema_for(sector)
        return schemas[sector]

    def _parse(self, raws: Sequence[Any], client: str | None, received_us: int,
               label: Label | None, schemas: dict[str, SectorSchema | None]) -> list[Observation]:
        """Validate every raw observation (with its sector's conformance); ``label``: name a bad batch item;
        ``schemas``: the sectors' schemas read so far in this batch (filled in)."""
        out: list[Observation] = []
        conformers: dict[str, Conform] = {}

        def conformer(sector: str) -> Conform:
            found = conformers.get(sector)
            if found is None:
                schema = self._schema(sector, schemas)
                if schema is None:  # stored, it would never be analysed: refuse it (SPEC §2)
                    installed = ", ".join(self.installed()) if self.installed is not None else ""
                    raise InvalidInputError(f"sector {sector!r} has no installed sector pack; installed: "
                                            f"{installed or 'none'}", field="sector")
                found = conformers[sector] = lambda event_type, value: conformance_issues(event_type, value, schema)
            return found

        for index, raw in enumerate(raws):
            sector = raw.get("sector") if type(raw) is dict else None
            try:
                # the conformer of a sector seen before in this batch is found without checking its name again
                conform = conformers.get(sector) if type(sector) is str else None
                if conform is None and isinstance(sector, str) and is_sector(sector):
                    conform = conformer(sector)
                out.append(parse_observation(raw, received_us=received_us, client=client, conform=conform))
            except KnhkError as exc:
                if label is not None:
                    raise at(index, exc, label) from exc
                raise
        return out

    @staticmethod
    def _stored(conn: Connection, candidates: Sequence[Observation]) -> dict[str, Observation]:
        """The stored observations among the candidates' client ids (server-assigned ids are new by birth)."""
        keyed = list({o.id for o in candidates if o.client_id})
        return store.find_by_ids(conn, keyed) if keyed else {}

    @staticmethod
    def _insert(conn: Connection, fresh: list[Observation],
                rows: list[tuple[Any, ...]] | None = None) -> list[Observation]:
        """Store the new observations (``rows``: theirs, built already) and number them in place."""
        if not fresh:
            return []
        try:
            seqs = store.insert_observations(conn, fresh, rows)
        except Exception as exc:
            # ingest holds the observations lock and has looked every id up: an id only observation_ids still
            # knows belongs to an observation archived after the retention (knhk.observations.retention)
            if "observation_ids" not in str(exc):
                raise
            raise ConflictError("an observation id of this batch was used by an observation archived after the "
                                "retention; ids are never reused") from exc
        for o in fresh:  # the ingest's own new objects, not seen by anyone yet: numbered in place, not copied
            assign_seq(o, seqs[o.id])
        return fresh

    @staticmethod
    def _earlier(index: int, candidates: Sequence[Observation], admissions: Sequence[Admission],
                 fresh: dict[str, Observation]) -> Observation:
        """The stored form of what candidate ``index`` (new, a duplicate or a repeat) stands for."""
        admission = admissions[index]
        while admission.repeat_of is not None:
            index = admission.repeat_of
            admission = admissions[index]
        return admission.stored if admission.stored is not None else fresh[candidates[index].id]

    def _stage(self, conn: Connection, fresh: list[Observation], audited: list[Observation],
               schemas: dict[str, SectorSchema | None], guarded: _Guarded | None = None) -> _Owed:
        """In the ingest transaction: guard the new observations (``guarded``: their guards were evaluated
        already, before the transaction) and owe their receipts, and owe the audit counts of ``audited`` (per
        client, sector and minute of the ledger's clock)."""
        violations, drafts, subjects = self._drafts(fresh, guarded if guarded is not None
                                                    else self._guard(fresh, schemas))
        counts: dict[tuple[str, str], int] = {}
        for obs in audited:
            if obs.client is not None:
                counts[(obs.client, obs.sector)] = counts.get((obs.client, obs.sector), 0) + 1
        minute = self.ledger.clock.now_us() // 60_000_000
        drafts_counted = [(receipts.audit_event(action=INGESTED, resource=f"sector/{sector}", outcome="success",
                                                reason=None, metadata={"minute": str(minute * 60)},
                                                sector=sector, actor=client), n)
                          for (client, sector), n in sorted(counts.items())]
        # the receipts and the counts in one statement (one round trip of the ingest transaction)
        staged = self.ledger.stage_with_counts(conn, drafts, drafts_counted,
                                               (minute + 1) * 60_000_000 + AUDIT_GRACE_US)
        rows: dict[str, list[int]] = {}
        for subject, row in zip(subjects, staged, strict=True):
            rows.setdefault(subject, []).append(row)
        return _Owed(violations, rows)

    def _after_commit(self, fresh: list[Observation], owed: _Owed) -> tuple[dict[str, list[str]], dict[str, int]]:
        """Drain the committed receipts (waiting at most ``receipt_wait_s``), then tell the subscriber (the
        detection engine). Receipt ids and pending receipt counts by observation id."""
        entries: dict[int, Entry] = {}
        wanted = [r for rows in owed.rows.values() for r in rows]
        if wanted:
            try:
                entries = self.ledger.receipts_of(wanted, self.receipt_wait_s)
            except KnhkError as exc:  # stored and owed: the sequencer drains them within its interval
                log.warning("guard receipts of %d violation(s) are committed to the outbox and follow: %s",
                            len(wanted) // 2, exc)
        if fresh and self.on_ingested is not None:
            try:
                self.on_ingested(fresh)
            except Exception:  # the observations are stored; a subscriber must not undo an acknowledged write
                log.exception("an on_ingested subscriber failed for %d observations", len(fresh))
        return owed.results(entries)

    def _guard(self, fresh: list[Observation], schemas: dict[str, SectorSchema | None]) -> _Guarded:
        """Evaluate hot-path guards on new observations (with the schemas their conformance was measured
        against)."""
        by_sector: dict[str, list[Observation]] = {}
        for obs in fresh:
            by_sector.setdefault(obs.sector, []).append(obs)
        found: list[tuple[str, GuardViolation]] = []
        for sector, observations in by_sector.items():
            schema = self._schema(sector, schemas)
            ordered = sorted(observations, key=lambda o: o.ts_us)
            doctrines = self.doctrines_for(sector) if self.doctrines_for is not None else ()
            relaxed = self.relaxed_for(sector, self.clock.now_us()) if self.relaxed_for is not None else frozenset()

            def evaluate(obs: Any, sch: Any, doctrines: Sequence[DoctrineLike] = doctrines,
                         relaxed: frozenset[str] = relaxed) -> list[GuardViolation]:
                return self.guards.evaluate(obs, sch, doctrines, relaxed)

            found.extend((sector, v) for v in telemetry.evaluate_guards(evaluate, ordered, schema, sector))
        return _Guarded(found)

    @staticmethod
    def _drafts(fresh: list[Observation], guarded: _Guarded
                ) -> tuple[dict[str, list[GuardViolation]], list[EntryDraft], list[str]]:
        """The violations of the stored observations ``fresh``, their receipts' drafts and the observation id
        of each draft."""
        violations: dict[str, list[GuardViolation]] = {}
        drafts: list[EntryDraft] = []
        subjects: list[str] = []
        if not guarded.found:
            return violations, drafts, subjects
        hashes = {o.id: o.content_hash for o in fresh}
        for sector, v in guarded.found:
            if v.observation_id not in hashes:  # evaluated, but not stored by this ingest
                continue
            violations.setdefault(v.observation_id, []).append(v)
            # the receipts commit to the observation's content too (SPEC §8): an edited row is detectable
            committed = commit([item(v.observation_id, hashes[v.observation_id])]).data()
            drafts.append(receipts.guard_violated(sector=sector, observation_id=v.observation_id, reason=v.reason,
                                                  data=v.data(), commitment=committed))
            drafts.append(receipts.guard_alert(sector=sector, observation_id=v.observation_id, level=v.level,
                                               reason=v.reason, guard_id=v.guard_id, criticality=v.criticality,
                                               event_type=v.event_type, commitment=committed))
            subjects.extend((v.observation_id, v.observation_id))
        return violations, drafts, subjects
