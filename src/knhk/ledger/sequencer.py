"""The one writer of the ledger: group commit with per-entry signatures (SPEC §8 "Writes").

Appenders in any thread hand their :class:`EntryDraft` to the process's sequencer thread and wait. The
thread takes everything queued (up to ``max_batch``), opens one transaction, takes the per-log lock
(PostgreSQL advisory lock; SQLite's write lock), reads the head, seals each draft (seq, time, parent, key,
signature), inserts the entries and the Merkle nodes they complete, issues a checkpoint when one is due,
and commits. Only then are the appenders released, so nothing is acknowledged before it is durable, and
because every batch starts from the head it reads under the lock, processes and replicas never fork or leave
gaps. Timestamps never go backwards along a log (``ts_us`` = max(now, parent's)).

A draft may carry a ``hook``: a function run inside the same transaction (under a savepoint) before the
entry is sealed, so a state change and its receipt commit together or not at all.

The sequencer also drains the transactional outbox (:mod:`knhk.ledger.outbox`): when asked (:meth:`Sequencer.drain`,
e.g. by an ingest that just committed observations and their staged receipts) and, once :meth:`start_polling` was
called (the service does), whenever a poll every ``drain_interval_s`` finds due rows — so a receipt staged by a
process that died before its drain follows within that interval of any live process. Due rows (oldest first, at
most ``max_batch``) are sealed first in the batch's transaction, and each is marked with its entry's seq there:
the drain is exactly-once, because the marks and the entries commit together under the ledger lock.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from knhk.errors import KnhkError
from knhk.ledger import outbox
from knhk.ledger import store as sql
from knhk.ledger.keyring import Keyring
from knhk.ops import telemetry
from knhk.ops.clock import Clock
from knhk.proof.checkpoint import origin_for, sign_checkpoint
from knhk.proof.entry import Entry, EntryDraft, encode_payload, entry_id
from knhk.proof.merkle import Frontier, decompose, leaf_hash
from knhk.proof.signing import SigningKey
from knhk.storage.database import Connection, Database

log = logging.getLogger("knhk.ledger")

Hook = Callable[[Connection], Any]
PARALLEL_SIGNING_MIN = 256  # smaller batches are signed on the sequencer thread


@dataclass
class Drain:
    """A request to drain the outbox: ``rows`` (ids) the caller waits for; ``own``: also this process's counts
    that are not due yet (at shutdown). Resolved with :class:`Drained` once its rows are entries."""

    rows: tuple[int, ...] = ()
    own: bool = False
    entries: dict[int, Entry] = field(default_factory=dict)
    written: int = 0


@dataclass(frozen=True)
class Drained:
    entries: dict[int, Entry]  # outbox row id → the entry it became, for the rows asked for
    written: int  # entries this request's drains wrote


@dataclass
class _Pending:
    """One request: a single draft (with an optional hook), or a group from ``append_many``.

    A group is sealed in one transaction and resolved through one future, so a large ``append_many`` costs
    no per-entry future or queue traffic.
    """

    drafts: list[EntryDraft]
    hook: Hook | None
    single: bool
    drain: Drain | None = None
    future: Future[Any] = field(default_factory=Future)
    ctx: Any = field(default_factory=telemetry.span_context)  # the appender's span, linked from the commit


@dataclass
class _LogState:
    """What the sequencer remembers of a log between batches (validated against the head each time)."""

    head: sql.Head | None
    frontier: Frontier
    checkpoint_size: int
    checkpoint_us: int
    key_id: str | None = None  # the key the log's last ledger_key_use row names, when known at ``head``


@dataclass(frozen=True)
class CheckpointPolicy:
    every_entries: int = 1000
    every_seconds: float = 60.0
    origin_prefix: str = ""


def lock_name(log_name: str) -> str:
    return f"knhk.ledger.{log_name}"


def load_frontier(conn: Connection, log_name: str, size: int) -> Frontier:
    keys = decompose(0, size)
    nodes = sql.get_nodes(conn, log_name, keys)
    missing = [k for k in keys if k not in nodes]
    if missing:
        raise KnhkError(f"log {log_name}: stored Merkle nodes {missing} are missing; run 'knhk receipts verify'")
    return Frontier(size, [(lvl, idx, nodes[(lvl, idx)]) for lvl, idx in keys])


class Sequencer:
    """Batches appends from all threads of this process into durable, signed, chained transactions."""

    def __init__(self, db: Database, keyring: Keyring, clock: Clock, policy: CheckpointPolicy,
                 max_batch: int = 2000, *, origin: str = "", drain_interval_s: float = 1.0) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.policy = policy
        self.max_batch = max_batch
        self.origin = origin  # this process, as its outbox rows name it
        self.drain_interval_s = drain_interval_s
        self._polling = False
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._state: dict[str, _LogState] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self.appended = 0
        self._signers = os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        #: called with the entries of each committed batch (e.g. to count them in metrics); must not raise
        self.listeners: list[Callable[[list[Entry]], None]] = []

    def _sign_all(self, key: SigningKey, payloads: list[bytes]) -> list[bytes]:
        if len(payloads) < PARALLEL_SIGNING_MIN or self._signers <= 1:
            return [key.sign(p) for p in payloads]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._signers, thread_name_prefix="knhk-signer")
        step = -(-len(payloads) // self._signers)
        parts = self._pool.map(lambda part: [key.sign(p) for p in part],
                               [payloads[i:i + step] for i in range(0, len(payloads), step)])
        return [sig for part in parts for sig in part]

    # -- public ---------------------------------------------------------------------------------------
    def submit(self, draft: EntryDraft, hook: Hook | None = None) -> Future[Entry]:
        pending = _Pending([draft], hook, single=True)
        self._enqueue(pending)
        return pending.future

    @telemetry.ledger_append
    def append(self, draft: EntryDraft, hook: Hook | None = None) -> Entry:
        return self.submit(draft, hook).result()

    @telemetry.ledger_append
    def append_many(self, drafts: Sequence[EntryDraft]) -> list[Entry]:
        """Append drafts in order; each group of up to ``max_batch`` commits in one transaction."""
        groups = [_Pending(list(drafts[i:i + self.max_batch]), None, single=False)
                  for i in range(0, len(drafts), self.max_batch)]
        for group in groups:
            self._enqueue(group)
        out: list[Entry] = []
        for group in groups:
            out.extend(group.future.result())
        return out

    def drain(self, rows: Sequence[int] = (), *, own: bool = False) -> Future[Drained]:
        """Drain the due outbox rows (and, with ``own``, this process's not yet due ones) until ``rows`` are
        entries; the future resolves with them (or fails with the ledger's error)."""
        pending = _Pending([], None, single=False, drain=Drain(tuple(rows), own))
        self._enqueue(pending)
        return pending.future

    def start_polling(self) -> None:
        """Poll the outbox every ``drain_interval_s`` from now on and drain what is due (the service does this)."""
        self._polling = True
        self._ensure_thread()
        self._queue.put(_Pending([], None, single=False, drain=Drain()))

    def _enqueue(self, pending: _Pending) -> None:
        if self._closed:
            raise KnhkError("the ledger sequencer is closed")
        self._ensure_thread()
        self._queue.put(pending)

    def close(self) -> None:
        with self._start_lock:
            self._closed = True
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None
            while True:  # a drain queued again behind the stop: its caller is told, not left waiting
                try:
                    left = self._queue.get_nowait()
                except queue.Empty:
                    break
                if left is not None and not left.future.done():
                    left.future.set_exception(KnhkError("the ledger sequencer is closed"))
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    # -- the thread -----------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="knhk-sequencer", daemon=True)
                    self._thread.start()

    def _poll(self) -> _Pending | None:
        """Wait for work; while polling, a drain of the outbox when nothing arrived within the interval and rows
        are due (the check is one indexed query; a failing database is retried at the next interval)."""
        if not self._polling:
            return self._queue.get()
        while True:
            try:
                return self._queue.get(timeout=self.drain_interval_s)
            except queue.Empty:
                pass
            try:
                with self.db.connection() as conn:
                    due = sql.any_outbox_due(conn, self.clock.now_us())
            except Exception as exc:
                log.debug("outbox poll failed: %s", exc)
                continue
            if due:
                return _Pending([], None, single=False, drain=Drain())

    def _run(self) -> None:
        while True:
            first = self._poll()
            if first is None:
                return
            batch = [first]
            size = len(first.drafts)
            stop = False
            while size < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                size += len(item.drafts)
            self._commit(batch)
            if stop:
                return

    @telemetry.ledger_commit
    def _commit(self, batch: list[_Pending]) -> None:
        # Work items in submission order, split by log: (request, position in its request, draft).
        by_log: dict[str, list[tuple[_Pending, int, EntryDraft]]] = {}
        for item in batch:
            for pos, draft in enumerate(item.drafts):
                by_log.setdefault(draft.log, []).append((item, pos, draft))
        outcomes: dict[int, list[Entry | BaseException | None]] = {id(item): [None] * len(item.drafts)
                                                                    for item in batch}
        drains = [item.drain for item in batch if item.drain is not None]
        drained: dict[int, Entry] = {}
        exhausted = True
        new_state: dict[str, _LogState] = {}
        try:
            with self.db.transaction(lock=lock_name("all")) as conn:
                owed: list[outbox.Owed] = []
                holder: _Pending | None = None
                if drains:
                    rows = sql.outbox_due(conn, self.clock.now_us(), self.max_batch,
                                          self.origin if any(d.own for d in drains) else None)
                    exhausted = len(rows) < self.max_batch
                    owed = outbox.drafts_for(rows)
                    if owed:
                        holder = self._owe(owed, by_log, outcomes)
                for log_name in sorted(by_log):
                    new_state[log_name] = self._seal_log(conn, log_name, by_log[log_name], outcomes)
                if holder is not None:
                    drained = self._mark(conn, owed, outcomes[id(holder)])
        except BaseException as exc:  # nothing was committed: every appender of the batch fails
            log.error("ledger batch of %d entries failed: %s", sum(len(i.drafts) for i in batch), exc)
            self._state.clear()
            err = exc if isinstance(exc, KnhkError) else KnhkError(f"ledger append failed: {exc}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        self._state.update(new_state)
        self.batches += 1
        if self.listeners:
            committed = [*drained.values(), *(r for item in batch for r in outcomes[id(item)] if isinstance(r, Entry))]
            for listener in self.listeners:
                try:
                    listener(committed)
                except Exception:
                    log.exception("a ledger listener failed")
        for item in batch:
            if item.drain is not None:
                self._settle(item, drained, exhausted)
                continue
            results = outcomes[id(item)]
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                item.future.set_exception(failed)
                continue
            self.appended += len(results)
            item.future.set_result(results[0] if item.single else results)

    # -- the outbox -----------------------------------------------------------------------------------
    @staticmethod
    def _owe(owed: list[outbox.Owed], by_log: dict[str, list[tuple[_Pending, int, EntryDraft]]],
             outcomes: dict[int, list[Entry | BaseException | None]]) -> _Pending:
        """Put the outbox's owed entries first in their logs' shares of the batch (they are the oldest); the
        request that holds them."""
        holder = _Pending([o.draft for o in owed], None, single=False)
        outcomes[id(holder)] = [None] * len(owed)
        firsts: dict[str, list[tuple[_Pending, int, EntryDraft]]] = {}
        for pos, item in enumerate(owed):
            firsts.setdefault(item.draft.log, []).append((holder, pos, item.draft))
        for log_name, items in firsts.items():
            by_log[log_name] = [*items, *by_log.get(log_name, [])]
        return holder

    @staticmethod
    def _mark(conn: Connection, owed: list[outbox.Owed], results: list[Entry | BaseException | None]
              ) -> dict[int, Entry]:
        """Mark every drained row with its entry's seq (in the transaction that inserts the entries)."""
        drained: dict[int, Entry] = {}
        for item, entry in zip(owed, results, strict=True):
            if not isinstance(entry, Entry):
                raise KnhkError(f"an outbox entry was not sealed: {entry}")
            for row in item.rows:
                drained[row] = entry
        sql.mark_outbox(conn, [(row, entry.seq) for row, entry in drained.items()])
        return drained

    def _settle(self, item: _Pending, drained: dict[int, Entry], exhausted: bool) -> None:
        """Resolve a drain request, or queue it again while its rows (or, ``own``, more rows) are still pending."""
        request = item.drain
        assert request is not None
        request.written += len({e.id for e in drained.values()})
        request.entries.update((row, drained[row]) for row in request.rows if row in drained)
        missing = [row for row in request.rows if row not in request.entries]
        try:
            if missing:  # drained before (another process or batch), or not yet reached
                with self.db.connection() as conn:
                    for row, (log_name, seq) in sql.outbox_seqs(conn, missing).items():
                        entry = None if seq is None else sql.get_entry(conn, log_name, seq)
                        if entry is not None:
                            request.entries[row] = entry
                missing = [row for row in request.rows if row not in request.entries]
        except Exception as exc:
            item.future.set_exception(exc if isinstance(exc, KnhkError) else KnhkError(f"outbox read failed: {exc}"))
            return
        if not exhausted and (missing or request.own):
            self._queue.put(item)
            return
        item.future.set_result(Drained(dict(request.entries), request.written))

    def _state_for(self, conn: Connection, log_name: str) -> _LogState:
        head = sql.head(conn, log_name)
        cached = self._state.get(log_name)
        if cached is not None and cached.head == head:
            return _LogState(cached.head, cached.frontier.copy(), cached.checkpoint_size, cached.checkpoint_us,
                             cached.key_id)
        size = 0 if head is None else head.tree_size
        frontier = load_frontier(conn, log_name, size)
        cp = sql.latest_checkpoint(conn, log_name)
        return _LogState(head, frontier, cp.tree_size if cp else 0, cp.issued_us if cp else 0)

    def _seal_log(self, conn: Connection, log_name: str, items: list[tuple[_Pending, int, EntryDraft]],
                  outcomes: dict[int, list[Entry | BaseException | None]]) -> _LogState:
        """One log's share of a batch, in the three steps a transparency log is built from (Tessera's seams):
        seal the entries, integrate them into the Merkle tree, publish a checkpoint when one is due."""
        state = self._state_for(conn, log_name)
        key = self._active_key(conn, log_name, state)
        entries = self._seal(conn, state, key, items, outcomes)
        head = self._integrate(conn, log_name, state, entries)
        cp_size, cp_us = self._publish_checkpoint(conn, log_name, state, key, grew=bool(entries))
        return _LogState(head, state.frontier, cp_size, cp_us, key.key_id)

    def _active_key(self, conn: Connection, log_name: str, state: _LogState) -> SigningKey:
        """The key this batch signs with; the first entry it signs in this log is recorded in ledger_key_use.
        The log's last key use is read unless ``state`` knows it: it is this process's from the batch that left
        the head as it still is (a use is only recorded by a batch that appends), naming the same key."""
        key_id = sql.active_key_id(conn)
        if key_id is None:
            raise KnhkError("the keyring has no active signing key; run 'knhk keys generate'")
        if state.key_id != key_id:
            last_use = sql.last_key_use(conn, log_name)
            if last_use is None or last_use[1] != key_id:
                sql.insert_key_use(conn, log_name, 0 if state.head is None else state.head.seq + 1, key_id)
        return self.keyring.signing_key(key_id)

    def _seal(self, conn: Connection, state: _LogState, key: SigningKey,
              items: list[tuple[_Pending, int, EntryDraft]],
              outcomes: dict[int, list[Entry | BaseException | None]]) -> list[Entry]:
        """Run each draft's hook, then give it its seq, time (never before its parent's), parent and signature.
        A draft whose hook raised gets that error as its outcome and no seq."""
        head = state.head
        seq = 0 if head is None else head.seq + 1
        parent = None if head is None else head.id
        last_ts = 0 if head is None else head.ts_us
        sealed: list[tuple[_Pending, int, bytes, str]] = []
        clock = self.clock
        for item, pos, draft in items:
            if item.hook is not None:
                try:
                    with conn.savepoint():
                        item.hook(conn)
                except Exception as exc:
                    outcomes[id(item)][pos] = exc
                    continue
            now = clock.now_us()
            ts = now if now > last_ts else last_ts
            payload = encode_payload(draft, seq, ts, parent, key.key_id)
            eid = entry_id(payload)
            sealed.append((item, pos, payload, eid))
            seq, parent, last_ts = seq + 1, eid, ts
        # Signatures do not depend on one another: sign the batch on every core (libsodium releases the GIL).
        sigs = self._sign_all(key, [payload for _, _, payload, _ in sealed])
        entries: list[Entry] = []
        for (item, pos, payload, eid), sig in zip(sealed, sigs, strict=True):
            entry = Entry(payload, eid, sig, orjson.loads(payload))
            entries.append(entry)
            outcomes[id(item)][pos] = entry
        return entries

    @staticmethod
    def _integrate(conn: Connection, log_name: str, state: _LogState, entries: list[Entry]) -> sql.Head | None:
        """Append the sealed entries to the log's Merkle tree; store them with every node they complete."""
        if not entries:
            return state.head
        frontier = state.frontier
        nodes: list[tuple[int, int, bytes]] = []
        for entry in entries:
            nodes.extend(frontier.append(leaf_hash(entry.payload)))
        sql.insert_entries_and_nodes(conn, log_name, entries, nodes)
        last = entries[-1]
        return sql.Head(last.seq, last.id, last.ts_us)

    def _publish_checkpoint(self, conn: Connection, log_name: str, state: _LogState, key: SigningKey, *,
                            grew: bool) -> tuple[int, int]:
        """Sign and store a checkpoint of the tree when the policy says one is due; (size, time) of the latest."""
        cp_size, cp_us = state.checkpoint_size, state.checkpoint_us
        frontier = state.frontier
        now = self.clock.now_us()
        due = frontier.size - cp_size >= self.policy.every_entries or (
            now - cp_us >= self.policy.every_seconds * 1_000_000
        )
        if not (grew and frontier.size > cp_size and due):
            return cp_size, cp_us
        cp = sign_checkpoint(origin_for(log_name, self.policy.origin_prefix), frontier.size, frontier.root(), key)
        sql.insert_checkpoint(conn, sql.StoredCheckpoint(log_name, cp.tree_size, cp.root_hash, cp.note,
                                                         key.key_id, now))
        return frontier.size, now
