"""The ledger as the rest of KNHK uses it: append, read, prove, checkpoint, rotate keys, verify.

One :class:`Ledger` per process and database. Proofs are computed from stored perfect-subtree nodes in one
query each (O(log n) rows), never by rebuilding the tree.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from knhk.errors import DependencyUnavailableError, InvalidInputError, NotFoundError
from knhk.ledger import outbox
from knhk.ledger import store as sql
from knhk.ledger.keyring import Keyring
from knhk.ledger.sequencer import CheckpointPolicy, Drained, Hook, Sequencer, lock_name
from knhk.ledger.verify import VerifyReport, verify_log
from knhk.ops.clock import SYSTEM_CLOCK, Clock
from knhk.proof.bundle import make_bundle
from knhk.proof.checkpoint import origin_for, sign_checkpoint
from knhk.proof.entry import LOGS, Entry, EntryDraft, check_log
from knhk.proof.merkle import (
    EMPTY_ROOT,
    consistency_ranges,
    decompose,
    fold,
    inclusion_ranges,
    nodes_for_ranges,
    range_hash,
)
from knhk.proof.signing import PublicKey, SigningKey
from knhk.storage.database import Connection, Database

MAX_SEQ = 2**62  # beyond any log; larger numbers are refused before they reach the database


class Ledger:
    """The receipt and audit logs of one KNHK installation."""

    def __init__(self, db: Database, keyring: Keyring, *, policy: CheckpointPolicy | None = None,
                 clock: Clock = SYSTEM_CLOCK, max_batch: int = 2000, drain_interval_s: float = 1.0) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.policy = policy or CheckpointPolicy()
        self.origin = uuid.uuid4().hex  # this process, as its outbox rows name it
        self.sequencer = Sequencer(db, keyring, clock, self.policy, max_batch=max_batch, origin=self.origin,
                                   drain_interval_s=drain_interval_s)

    def close(self) -> None:
        self.sequencer.close()

    # -- writing --------------------------------------------------------------------------------------
    def append(self, draft: EntryDraft, hook: Hook | None = None) -> Entry:
        """Append one entry; returns once it is durable. ``hook`` runs in the same transaction."""
        return self.sequencer.append(draft, hook)

    def append_many(self, drafts: Sequence[EntryDraft]) -> list[Entry]:
        return self.sequencer.append_many(drafts)

    # -- the outbox (knhk.ledger.outbox) --------------------------------------------------------------
    def stage(self, conn: Connection, drafts: Sequence[EntryDraft]) -> list[int]:
        """Owe one entry per draft, in the caller's transaction ``conn``: once it commits, the entries are
        written by a drain (:meth:`receipts_of`, the sequencer's poll), exactly once. Their outbox row ids."""
        return outbox.stage(conn, drafts, now_us=self.clock.now_us(), origin=self.origin)

    def stage_counts(self, conn: Connection, counts: Sequence[tuple[EntryDraft, int]], due_us: int) -> None:
        """Owe counted audit entries (see :func:`knhk.ledger.outbox.stage_count`), drained after ``due_us``."""
        outbox.stage_count(conn, counts, now_us=self.clock.now_us(), due_us=due_us, origin=self.origin)

    def stage_with_counts(self, conn: Connection, drafts: Sequence[EntryDraft],
                          counts: Sequence[tuple[EntryDraft, int]], due_us: int) -> list[int]:
        """:meth:`stage` of ``drafts`` and :meth:`stage_counts` of ``counts`` in one statement (an ingest owes
        both); the outbox row ids of ``drafts``, in order."""
        return outbox.stage_with_counts(conn, drafts, counts, now_us=self.clock.now_us(), due_us=due_us,
                                        origin=self.origin)

    def receipts_of(self, rows: Sequence[int], timeout_s: float) -> dict[int, Entry]:
        """Drain the outbox until ``rows`` are entries (at most ``timeout_s``); row id → entry.

        Raises :class:`DependencyUnavailableError` when the ledger cannot be written within that time; the rows
        stay owed and are drained later (by this or any other process)."""
        future = self.sequencer.drain(rows)
        try:
            drained: Drained = future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError as exc:
            raise DependencyUnavailableError(f"the ledger did not take the staged entries within {timeout_s} s;"
                                             " they stay owed and follow") from exc
        return drained.entries

    def flush_outbox(self, *, own: bool = False) -> int:
        """Drain every due outbox row (``own``: and this process's counts not due yet); the entries written."""
        return self.sequencer.drain(own=own).result().written

    def outbox_pending(self) -> int:
        """Outbox rows not drained yet."""
        with self.db.connection() as conn:
            return sql.count_outbox_pending(conn)

    def start_polling(self) -> None:
        """Drain the outbox every ``drain_interval_s`` when rows are due, from now on (the service)."""
        self.sequencer.start_polling()

    # -- reading --------------------------------------------------------------------------------------
    def head(self, log: str) -> sql.Head | None:
        check_log(log)
        with self.db.connection() as conn:
            return sql.head(conn, log)

    def tree_size(self, log: str) -> int:
        head = self.head(log)
        return 0 if head is None else head.tree_size

    def entry(self, log: str, seq: int) -> Entry:
        check_log(log)
        if not 0 <= seq <= MAX_SEQ:
            raise NotFoundError(f"log {log} has no entry {seq}")
        with self.db.connection() as conn:
            entry = sql.get_entry(conn, log, seq)
        if entry is None:
            raise NotFoundError(f"log {log} has no entry {seq}")
        return entry

    def entry_by_id(self, entry_id: str) -> Entry:
        with self.db.connection() as conn:
            entry = sql.get_entry_by_id(conn, entry_id)
        if entry is None:
            raise NotFoundError(f"no ledger entry has id {entry_id}")
        return entry

    def entries(self, log: str, *, after_seq: int = -1, limit: int = 100, kind: str | None = None,
                sector: str | None = None, descending: bool = False, before_seq: int | None = None,
                subject: str | None = None, since_us: int | None = None,
                until_us: int | None = None) -> list[Entry]:
        """Entries of ``log`` in seq order (``descending``: newest first, before ``before_seq``), filtered by
        kind, sector, subject and a time range ``since_us`` ≤ ts_us < ``until_us``."""
        check_log(log)
        if not 1 <= limit <= 10_000:
            raise InvalidInputError("limit must be between 1 and 10000")
        if not -1 <= after_seq <= MAX_SEQ or (before_seq is not None and not 0 <= before_seq <= MAX_SEQ):
            raise InvalidInputError(f"seq bounds must lie between -1 and {MAX_SEQ}")
        with self.db.connection() as conn:
            return sql.list_entries(conn, log, after_seq=after_seq, limit=limit, kind=kind, sector=sector,
                                    descending=descending, before_seq=before_seq, subject=subject,
                                    since_us=since_us, until_us=until_us)

    # -- tree and proofs ------------------------------------------------------------------------------
    def _size_check(self, log: str, *sizes: int) -> int:
        current = self.tree_size(log)
        for size in sizes:
            if size > current:
                raise NotFoundError(f"log {log} has {current} entries; there is no tree of size {size}")
        return current

    def root(self, log: str, size: int | None = None) -> bytes:
        check_log(log)
        size = self.tree_size(log) if size is None else size
        if size == 0:
            return EMPTY_ROOT
        self._size_check(log, size)
        with self.db.connection() as conn:
            nodes = sql.get_nodes(conn, log, decompose(0, size))
        return fold([nodes[k] for k in decompose(0, size)])

    def _proof(self, log: str, size: int, ranges: Callable[[], list[tuple[int, int]]]) -> list[bytes]:
        """The hashes of ``ranges()`` from stored nodes: the head and the nodes read on one connection."""
        with self.db.connection() as conn:
            head = sql.head(conn, log)
            current = 0 if head is None else head.tree_size
            if size > current:
                raise NotFoundError(f"log {log} has {current} entries; there is no tree of size {size}")
            wanted = ranges()  # a ProofError (422) for sizes or indexes that do not exist
            nodes = sql.get_nodes(conn, log, nodes_for_ranges(wanted))
        return [range_hash(a, b, nodes) for a, b in wanted]

    def inclusion_proof(self, log: str, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` entries."""
        check_log(log)
        return self._proof(log, size, lambda: inclusion_ranges(index, size))

    def consistency_proof(self, log: str, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""
        check_log(log)
        return self._proof(log, second, lambda: consistency_ranges(first, second))

    # -- checkpoints ----------------------------------------------------------------------------------
    def _issue(self, conn: Connection, log: str, key: SigningKey) -> sql.StoredCheckpoint | None:
        head = sql.head(conn, log)
        if head is None:
            return None
        existing = sql.get_checkpoint(conn, log, head.tree_size)
        if existing is not None and existing.key_id == key.key_id:
            return existing
        keys = decompose(0, head.tree_size)
        nodes = sql.get_nodes(conn, log, keys)
        cp = sign_checkpoint(origin_for(log, self.policy.origin_prefix), head.tree_size,
                             fold([nodes[k] for k in keys]), key)
        stored = sql.StoredCheckpoint(log, cp.tree_size, cp.root_hash, cp.note, key.key_id, self.clock.now_us())
        if existing is None:
            sql.insert_checkpoint(conn, stored)
            return stored
        return existing

    def checkpoint(self, log: str) -> sql.StoredCheckpoint:
        """Issue (or return the existing) checkpoint of the log's current size."""
        check_log(log)
        with self.db.transaction(lock=lock_name("all")) as conn:
            key_id = sql.active_key_id(conn)
            if key_id is None:
                raise NotFoundError("the keyring has no active signing key")
            cp = self._issue(conn, log, self.keyring.signing_key(key_id))
        if cp is None:
            raise NotFoundError(f"log {log} is empty; there is nothing to checkpoint")
        return cp

    def latest_checkpoint(self, log: str) -> sql.StoredCheckpoint | None:
        check_log(log)
        with self.db.connection() as conn:
            return sql.latest_checkpoint(conn, log)

    def checkpoints(self, log: str) -> list[sql.StoredCheckpoint]:
        check_log(log)
        with self.db.connection() as conn:
            return sql.list_checkpoints(conn, log)

    # -- bundles --------------------------------------------------------------------------------------
    def prove(self, log: str, seq: int) -> dict[str, Any]:
        """An offline proof bundle for entry ``seq``, against a checkpoint signed by the entry's key."""
        entry = self.entry(log, seq)
        candidates = [cp for cp in self.checkpoints(log) if cp.tree_size > seq and cp.key_id == entry.key_id]
        if candidates:
            cp = candidates[-1]
        else:
            cp = self.checkpoint(log)
            if cp.key_id != entry.key_id or cp.tree_size <= seq:
                raise NotFoundError(f"no checkpoint signed by key {entry.key_id} covers entry {seq}")
        public = self.keyring.public_key(entry.key_id).public_key
        proof = self.inclusion_proof(log, seq, cp.tree_size)
        return make_bundle(entry, cp.tree_size, proof, cp.note, public)

    # -- keys -----------------------------------------------------------------------------------------
    def rotate_key(self, new_key: SigningKey | None = None) -> tuple[str | None, PublicKey]:
        """Make a new key active. Each log is first closed with a checkpoint signed by the outgoing key,
        so every entry stays provable with the key that signed it."""
        old = self.keyring.active_key_id()
        key = new_key or SigningKey.generate()

        def close_logs(conn: Connection) -> None:
            if old is None:
                return
            outgoing = self.keyring.signing_key(old)
            for log in LOGS:
                self._issue(conn, log, outgoing)

        public = self.keyring.install(key, lock=lock_name("all"), before_switch=close_logs)
        return old, public

    # -- verification ---------------------------------------------------------------------------------
    def verify(self, log: str, *, workers: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        check_log(log)
        return verify_log(self.db, log, workers=workers, progress=progress)
