"""Ingesting observations (SPEC §2): validate, deduplicate, measure conformance, store, guard, notify.

One call stores a single observation or an atomic batch of up to 10,000: every item is validated first, and
if any is invalid nothing is stored and the error names the item's index. An observation of a sector with no
installed sector pack (no current snapshot) is invalid: stored, it would never be analysed. A client ``id`` is
an idempotency key: the identical observation sent again returns the stored one (``duplicate``), the same id
with other content is a :class:`~knhk.errors.ConflictError`; nothing is ever overwritten. Clock skew is judged
for new observations only, so a late retry of a stored observation still answers as a duplicate.

The batch is written in one transaction (SQLite: ``executemany``; PostgreSQL: one set-based ``INSERT …
RETURNING``); on PostgreSQL the transaction holds the advisory lock ``knhk.observations`` so ingest sequence
numbers become visible in commit order (a cursor never skips a row) and the id lookup and insert cannot race;
SQLite's write lock does the same.

Single observations from concurrent callers are group-committed (:meth:`Ingestor.ingest`): each caller's
observation is validated in its own thread, then one writer thread stores everything waiting in one
transaction, so throughput is not bounded by one commit (and its fsync) per observation. A conflict or skew
refusal fails only its own caller; a database failure fails the whole group, and nothing of it is stored.

After the commit the sector's hot-path guards are evaluated on the new observations; each violation appends a
``guard.violated`` and an ``alert.raised`` receipt (one ``append_many``), and ``on_ingested`` is called with
the new observations (the detection engine subscribes). The receipts are appended after the observations
commit: if the ledger is unavailable at that moment the observations stay stored and the call raises
:class:`~knhk.errors.DependencyUnavailableError` saying so.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from knhk.errors import (
    ConflictError,
    DependencyUnavailableError,
    InvalidInputError,
    KnhkError,
    PayloadTooLargeError,
    UsageError,
)
from knhk.ledger.entry import EntryDraft
from knhk.ledger.evidence import commit, item
from knhk.ledger.ledger import Ledger
from knhk.observations.conformance import conformance_issues
from knhk.observations.guards import GuardEvaluator, GuardViolation
from knhk.observations.model import Conform, Observation, check_skew, is_sector, parse_observation
from knhk.ontology.schema import SectorSchema
from knhk.ops import telemetry
from knhk.ops.clock import Clock
from knhk.storage import observation_store as store
from knhk.storage.database import Database

if TYPE_CHECKING:
    from knhk.validation.doctrines import Doctrine

log = logging.getLogger("knhk.observations")

MAX_BATCH = 10_000
LOCK = "knhk.observations"

SchemaLookup = Callable[[str], SectorSchema | None]
Subscriber = Callable[[list[Observation]], None]
DoctrineLookup = Callable[[str], Sequence["Doctrine"]]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to one submitted observation."""

    observation: Observation
    duplicate: bool = False
    violations: tuple[GuardViolation, ...] = ()
    receipt_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.observation.id,
            "duplicate": self.duplicate,
            "conforming": self.observation.conforming,
            "issues": list(self.observation.issues),
            "skewed": self.observation.skewed,
            "violations": [v.data() for v in self.violations],
            "receipts": list(self.receipt_ids),
        }


def _at(index: int | None, exc: KnhkError) -> KnhkError:
    """The same error, naming the batch item it concerns (unchanged for a single observation)."""
    if index is None:
        return exc
    return type(exc)(f"observation {index}: {exc.message}", **{**exc.details, "index": index})


class Ingestor:
    """Validates, stores and guards observations for every sector of one installation."""

    def __init__(self, db: Database, ledger: Ledger, schema_for: SchemaLookup, clock: Clock,
                 on_ingested: Subscriber | None = None, doctrines_for: DoctrineLookup | None = None,
                 installed: Callable[[], Sequence[str]] | None = None) -> None:
        self.db = db
        self.ledger = ledger
        self.schema_for = schema_for
        self.clock = clock
        self.on_ingested = on_ingested
        self.doctrines_for = doctrines_for  # the sector's resource_limit doctrines hold on ingest, sector-wide
        self.installed = installed  # the installed sectors, named when an observation's sector is not one
        self.guards = GuardEvaluator()
        self._pending: queue.SimpleQueue[tuple[Observation, Future[IngestResult]]] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    def ingest(self, raw: Any, client: str | None = None) -> IngestResult:
        """Ingest one observation (group-committed with concurrent callers' observations)."""
        received_us = self.clock.now_us()
        obs = self._parse([raw], client, received_us, batch=False)[0]
        if obs.skewed and not obs.client_id:
            self._check_skew(obs, None, received_us)
        future: Future[IngestResult] = Future()
        self._ensure_writer()
        self._pending.put((obs, future))
        return future.result()

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
                for _, future in group:
                    if not future.done():
                        future.set_exception(err)

    @telemetry.ingest("group")
    def _commit_group(self, group: list[tuple[Observation, Future[IngestResult]]]) -> None:
        received_us = self.clock.now_us()
        first: dict[str, Observation] = {}
        outcome: dict[int, Observation | KnhkError | str] = {}  # str: a repeat of an id fresh in this group
        fresh: list[Observation] = []
        with self.db.transaction(lock=LOCK) as conn:
            keyed = list({o.id for o, _ in group if o.client_id})
            existing = store.find_by_ids(conn, keyed) if keyed else {}
            for n, (obs, _) in enumerate(group):
                earlier = existing.get(obs.id) or first.get(obs.id)
                if earlier is not None:
                    same = earlier.content_hash == obs.content_hash
                    outcome[n] = (earlier if obs.id in existing else obs.id) if same else ConflictError(
                        f"id {obs.id!r} is already stored with different content; observations are never"
                        " overwritten", id=obs.id)
                    continue
                if obs.skewed and obs.client_id:
                    try:
                        check_skew(obs.ts_us, received_us)
                    except KnhkError as exc:
                        outcome[n] = exc
                        continue
                first[obs.id] = obs
                fresh.append(obs)
            if fresh:
                seqs = store.insert_observations(conn, fresh)
                fresh = [o.with_seq(seqs[o.id]) for o in fresh]
        stored = {o.id: o for o in fresh}
        violations, receipt_ids, failure = self._guard(fresh)
        if fresh and self.on_ingested is not None:
            try:
                self.on_ingested(fresh)
            except Exception:
                log.exception("an on_ingested subscriber failed for %d observations", len(fresh))
        for n, (obs, future) in enumerate(group):
            result = outcome.get(n)
            if isinstance(result, KnhkError):
                future.set_exception(result)
            elif isinstance(result, str):
                future.set_result(IngestResult(stored[result], duplicate=True))
            elif result is not None:
                future.set_result(IngestResult(result, duplicate=True))
            elif failure is not None and obs.id in violations:
                future.set_exception(failure)
            else:
                final = stored[obs.id]
                future.set_result(IngestResult(final, violations=tuple(violations.get(obs.id, ())),
                                               receipt_ids=tuple(receipt_ids.get(obs.id, ()))))

    def ingest_batch(self, raws: Sequence[Any], client: str | None = None) -> list[IngestResult]:
        """Ingest up to 10,000 observations atomically; results are in input order."""
        if not isinstance(raws, list | tuple):
            raise UsageError("a batch must be a JSON array of observations")
        if len(raws) > MAX_BATCH:
            raise PayloadTooLargeError(f"a batch holds at most {MAX_BATCH} observations, got {len(raws)}")
        return self._ingest(raws, client, batch=True)

    # -- the steps ------------------------------------------------------------------------------------
    @telemetry.ingest("batch")
    def _ingest(self, raws: Sequence[Any], client: str | None, *, batch: bool) -> list[IngestResult]:
        if not raws:
            return []
        received_us = self.clock.now_us()
        parsed = self._parse(raws, client, received_us, batch)
        unique, first_index = self._collapse(parsed, batch)
        stored, fresh = self._store(unique, first_index, received_us, batch)
        violations, receipt_ids, failure = self._guard(fresh)
        if fresh and self.on_ingested is not None:
            try:
                self.on_ingested(fresh)
            except Exception:  # the observations are stored; a subscriber must not undo an acknowledged write
                log.exception("an on_ingested subscriber failed for %d observations", len(fresh))
        if failure is not None:
            raise failure
        fresh_ids = {o.id for o in fresh}
        results: list[IngestResult] = []
        seen: set[str] = set()
        for obs in parsed:
            final = stored[obs.id]
            is_new = obs.id in fresh_ids and obs.id not in seen
            seen.add(obs.id)
            results.append(IngestResult(
                final, duplicate=not is_new,
                violations=tuple(violations.get(obs.id, ())) if is_new else (),
                receipt_ids=tuple(receipt_ids.get(obs.id, ())) if is_new else (),
            ))
        return results

    def _parse(self, raws: Sequence[Any], client: str | None, received_us: int,
               batch: bool) -> list[Observation]:
        out: list[Observation] = []
        conformers: dict[str, Conform] = {}

        def conformer(sector: str) -> Conform:
            found = conformers.get(sector)
            if found is None:
                schema = self.schema_for(sector)
                if schema is None:  # stored, it would never be analysed: refuse it (SPEC §2)
                    installed = ", ".join(self.installed()) if self.installed is not None else ""
                    raise InvalidInputError(f"sector {sector!r} has no installed sector pack; installed: "
                                            f"{installed or 'none'}", field="sector")
                found = conformers[sector] = lambda event_type, value: conformance_issues(event_type, value, schema)
            return found

        for index, raw in enumerate(raws):
            sector = raw.get("sector") if isinstance(raw, dict) else None
            try:
                conform = conformer(sector) if isinstance(sector, str) and is_sector(sector) else None
                out.append(parse_observation(raw, received_us=received_us, client=client, conform=conform))
            except KnhkError as exc:
                if batch:
                    raise _at(index, exc) from exc
                raise
        return out

    @staticmethod
    def _collapse(parsed: list[Observation], batch: bool) -> tuple[list[Observation], dict[str, int]]:
        """Drop repeats of one id within the batch (identical content); refuse conflicting repeats."""
        unique: list[Observation] = []
        first: dict[str, int] = {}
        for index, obs in enumerate(parsed):
            earlier = first.get(obs.id)
            if earlier is None:
                first[obs.id] = index
                unique.append(obs)
            elif parsed[earlier].content_hash != obs.content_hash:
                raise ConflictError(
                    f"observation {index}: id {obs.id!r} is also used by observation {earlier} of this batch"
                    " with different content", id=obs.id, index=index)
        return unique, first

    def _store(self, unique: list[Observation], first_index: dict[str, int], received_us: int,
               batch: bool) -> tuple[dict[str, Observation], list[Observation]]:
        """Insert the new observations in one transaction; return every id's stored form and the new ones."""
        stored: dict[str, Observation] = {}
        for obs in unique:  # server-assigned ids cannot be duplicates: judge their skew before taking the lock
            if obs.skewed and not obs.client_id:
                self._check_skew(obs, first_index[obs.id] if batch else None, received_us)
        with self.db.transaction(lock=LOCK) as conn:
            keyed = [o.id for o in unique if o.client_id]
            existing = store.find_by_ids(conn, keyed) if keyed else {}
            fresh: list[Observation] = []
            for obs in unique:
                index = first_index[obs.id] if batch else None
                old = existing.get(obs.id)
                if old is not None:
                    if old.content_hash != obs.content_hash:
                        raise _at(index, ConflictError(
                            f"id {obs.id!r} is already stored with different content; observations are"
                            " never overwritten", id=obs.id))
                    stored[obs.id] = old
                    continue
                if obs.skewed and obs.client_id:
                    self._check_skew(obs, index, received_us)
                fresh.append(obs)
            if fresh:
                seqs = store.insert_observations(conn, fresh)
                fresh = [o.with_seq(seqs[o.id]) for o in fresh]
        for obs in fresh:
            stored[obs.id] = obs
        return stored, fresh

    @staticmethod
    def _check_skew(obs: Observation, index: int | None, received_us: int) -> None:
        try:
            check_skew(obs.ts_us, received_us)
        except KnhkError as exc:
            if index is not None:
                raise _at(index, exc) from exc
            raise

    def _guard(self, fresh: list[Observation]) -> tuple[dict[str, list[GuardViolation]], dict[str, list[str]],
                                                         KnhkError | None]:
        """Evaluate hot-path guards on the new observations and write their receipts."""
        by_sector: dict[str, list[Observation]] = {}
        for obs in fresh:
            by_sector.setdefault(obs.sector, []).append(obs)
        found: list[tuple[str, GuardViolation]] = []
        for sector, observations in by_sector.items():
            schema = self.schema_for(sector)
            ordered = sorted(observations, key=lambda o: o.ts_us)
            doctrines = self.doctrines_for(sector) if self.doctrines_for is not None else ()

            def evaluate(obs: Any, sch: Any, doctrines: Sequence[Doctrine] = doctrines) -> list[GuardViolation]:
                return self.guards.evaluate(obs, sch, doctrines)

            found.extend((sector, v) for v in telemetry.evaluate_guards(evaluate, ordered, schema, sector))
        violations: dict[str, list[GuardViolation]] = {}
        receipts: dict[str, list[str]] = {}
        if not found:
            return violations, receipts, None
        drafts: list[EntryDraft] = []
        hashes = {o.id: o.content_hash for o in fresh}
        for sector, v in found:
            violations.setdefault(v.observation_id, []).append(v)
            # the receipts commit to the observation's content too (SPEC §8): an edited row is detectable
            committed = commit([item(v.observation_id, hashes[v.observation_id])]).data()
            drafts.append(EntryDraft(log="receipts", kind="guard.violated", sector=sector,
                                     subject=v.observation_id, outcome="violated", reason=v.reason,
                                     evidence=[v.observation_id], data={**v.data(), **committed}))
            drafts.append(EntryDraft(log="receipts", kind="alert.raised", sector=sector,
                                     subject=v.observation_id, outcome=v.level, reason=v.reason,
                                     evidence=[v.observation_id],
                                     data={"level": v.level, "source": "guard", "guard_id": v.guard_id,
                                           "criticality": v.criticality, "event_type": v.event_type, **committed}))
        try:
            entries = self.ledger.append_many(drafts)
        except KnhkError as exc:
            log.error("guard receipts for %d violations were not written: %s", len(found), exc)
            return violations, receipts, DependencyUnavailableError(
                f"the observations were stored, but the receipts of {len(found)} guard violation(s) could not"
                f" be written to the ledger: {exc.message}")
        for entry in entries:
            receipts.setdefault(str(entry.fields["subject"]), []).append(entry.id)
        return violations, receipts, None
