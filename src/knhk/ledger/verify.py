"""The ledger verifier (SPEC §8 "Verification"): trusts nothing it reads.

For every entry it recomputes the id from the payload, re-encodes the payload canonically, checks the
signature with the key that was valid at that seq, the parent link, seq contiguity, that time never runs
backwards (retrocausation, invariant Q1) and that the stored columns agree with the payload. It rebuilds the
RFC 9162 tree from the payloads, compares every stored Merkle node, and checks every stored checkpoint:
signature, and root equal to the rebuilt tree at that size. Checkpoints that all match one rebuilt tree are
consistent with each other; a checkpoint beyond the log's end means entries were removed.

Work is split into chunks of 2^14 entries aligned to perfect subtrees; large logs are verified by a pool of
processes (one per core), each reading its own chunks from the database.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import orjson
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _sodium

from knhk.errors import VerificationError
from knhk.ledger import store as sql
from knhk.ops.clock import SYSTEM_CLOCK, format_rfc3339
from knhk.proof.canonical import is_canonical
from knhk.proof.checkpoint import verify_checkpoint
from knhk.proof.merkle import NodeKey, decompose, fold, node_hash
from knhk.proof.signing import SIGNATURE_SIZE
from knhk.storage.database import Database

CHUNK_LEVEL = 14  # 16,384 entries a chunk: small enough that the workers finish together
CHUNK = 1 << CHUNK_LEVEL
PARALLEL_THRESHOLD = 4 * CHUNK
MAX_LISTED_FAILURES = 100

CATEGORIES = ("signature", "chain", "retrocausation", "row", "merkle", "checkpoint")


@dataclass
class Failure:
    seq: int | None
    category: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "category": self.category, "reason": self.reason}


@dataclass
class ChunkResult:
    start: int
    end: int
    verified: int = 0
    failures: list[Failure] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    first_parent: str | None = None
    first_ts: int | None = None
    first_present: bool = False
    last_id: str | None = None
    last_ts: int | None = None
    top: bytes | None = None
    partials: dict[int, list[bytes]] = field(default_factory=dict)
    complete: bool = True  # every leaf of the chunk could be hashed


@dataclass
class VerifyReport:
    """The SPEC §8 report, plus the first failure and per-category detail."""

    log: str
    total_count: int
    verified_count: int
    signature_failures: int
    chain_breaks: int
    retrocausation_violations: int
    row_mismatches: int
    merkle_node_mismatches: int
    tree_size: int
    root_hash: str
    checkpoint_consistent: bool
    checkpoints_checked: int
    last_verified_timestamp: str
    failures: list[Failure]

    @property
    def ok(self) -> bool:
        return (
            self.verified_count == self.total_count == self.tree_size
            and self.signature_failures == self.chain_breaks == self.retrocausation_violations == 0
            and self.row_mismatches == self.merkle_node_mismatches == 0
            and self.checkpoint_consistent
        )

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def to_json(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "ok": self.ok,
            "log": self.log,
            "total_count": self.total_count,
            "verified_count": self.verified_count,
            "signature_failures": self.signature_failures,
            "chain_breaks": self.chain_breaks,
            "retrocausation_violations": self.retrocausation_violations,
            "row_mismatches": self.row_mismatches,
            "merkle_node_mismatches": self.merkle_node_mismatches,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "checkpoint_consistent": self.checkpoint_consistent,
            "checkpoints_checked": self.checkpoints_checked,
            "last_verified_timestamp": self.last_verified_timestamp,
            "first_failure": None if first is None else first.to_json(),
            "failures": [f.to_json() for f in self.failures],
        }


class _KeyPlan:
    """Which key is valid at which seq of one log."""

    def __init__(self, uses: Sequence[tuple[int, str]], keys: Mapping[str, bytes]) -> None:
        self.starts = [s for s, _ in uses]
        self.ids = [k for _, k in uses]
        self.keys = dict(keys)

    def key_at(self, seq: int) -> str | None:
        i = bisect.bisect_right(self.starts, seq) - 1
        return self.ids[i] if i >= 0 else None

    def key_span(self, seq: int) -> tuple[str | None, int]:
        """The key valid at ``seq`` and the first seq at which that may change."""
        i = bisect.bisect_right(self.starts, seq)
        until = self.starts[i] if i < len(self.starts) else 1 << 62
        return (self.ids[i - 1] if i > 0 else None), until


class _Opener:
    """libsodium's ``crypto_sign_open`` called directly with one reused output buffer (PyNaCl's wrapper
    allocates two buffers and copies the message out on every call, ~15 % of the verify time)."""

    def __init__(self) -> None:
        self._size = 0
        self._out: Any = None
        self._out_len: Any = _ffi.new("unsigned long long *")

    def verifies(self, sig: bytes, payload: bytes, public: bytes) -> bool:
        if len(public) != 32:  # libsodium would read past a short key
            return False
        signed = sig + payload
        if len(signed) > self._size:
            self._size = max(2 * len(signed), 4096)
            self._out = _ffi.new("unsigned char[]", self._size)
        return bool(_sodium.crypto_sign_open(self._out, self._out_len, signed, len(signed), public) == 0)


def _fail(result: ChunkResult, seq: int | None, category: str, reason: str) -> None:
    result.counts[category] += 1
    if len(result.failures) < MAX_LISTED_FAILURES:
        result.failures.append(Failure(seq, category, reason))


def _check_rows(result: ChunkResult, log: str, rows: Sequence[Sequence[Any]], plan: _KeyPlan,
                leaves: list[bytes | None]) -> None:
    by_seq = {int(r[1]): r for r in rows}
    prev_id: str | None = None
    prev_ts: int | None = None
    sha256 = hashlib.sha256
    loads = orjson.loads
    key_until = -1  # the current signing key is valid for seqs below this
    expected_key: str | None = None
    expected_public: bytes | None = None
    verifies = _Opener().verifies
    for seq in range(result.start, result.end):
        row = by_seq.get(seq)
        if row is None:
            if seq == result.start or (seq - 1) in by_seq:  # one listed failure per run of missing entries
                run_end = min([s for s in by_seq if s > seq], default=result.end)
                what = f"entry {seq} is" if run_end == seq + 1 else f"entries {seq}..{run_end - 1} are"
                result.failures.append(Failure(seq, "chain", f"{what} missing (gap in the sequence)"))
                del result.failures[MAX_LISTED_FAILURES:]
            result.counts["chain"] += 1
            prev_id = prev_ts = None
            continue
        _log, _seq, stored_id, ts_col, kind_col, sector_col, subject_col, key_col, payload, sig = row
        if type(payload) is not bytes:
            payload = bytes(payload)
        if type(sig) is not bytes:
            sig = bytes(sig)
        ok = True
        leaves[seq - result.start] = sha256(b"\x00" + payload).digest()
        computed_id = sha256(payload).hexdigest()
        try:
            fields = loads(payload)
            if type(fields) is not dict:
                raise ValueError("not an object")
        except Exception:
            _fail(result, seq, "chain", "payload is not canonical JSON")
            prev_id, prev_ts = computed_id, None
            continue
        get = fields.get
        if stored_id != computed_id:
            _fail(result, seq, "chain", "stored id does not equal SHA-256 of the payload")
            ok = False
        if not is_canonical(payload, fields):
            _fail(result, seq, "chain", "payload is not in canonical form")
            ok = False
        v, seq_field = get("v"), get("seq")
        if type(v) is not int or v != 1 or get("log") != log or type(seq_field) is not int or seq_field != seq:
            _fail(result, seq, "chain", "payload version, log or seq does not match its position")
            ok = False
        parent = get("parent")
        ts = get("ts_us")
        if seq == result.start:
            result.first_parent = parent
            result.first_ts = ts
            result.first_present = True
        elif prev_id is not None and parent != prev_id:
            _fail(result, seq, "chain", f"parent does not link to entry {seq - 1}")
            ok = False
        if type(ts) is not int:
            _fail(result, seq, "chain", "payload has no integer ts_us")
            ok = False
            ts = None
        elif prev_ts is not None and ts < prev_ts:
            _fail(result, seq, "retrocausation", f"timestamp {ts} is earlier than its parent's {prev_ts}")
            ok = False
        key_id = get("key_id")
        if (ts_col != ts or kind_col != get("kind") or sector_col != get("sector") or subject_col != get("subject")
                or key_col != key_id):
            _fail(result, seq, "row", "stored columns disagree with the signed payload")
            ok = False
        if seq >= key_until:
            expected_key, key_until = plan.key_span(seq)
            expected_public = plan.keys.get(expected_key) if expected_key is not None else None
        if expected_public is None or key_id != expected_key:
            _fail(result, seq, "signature", f"key {key_id} was not the log's key at seq {seq}")
            ok = False
        elif len(sig) != SIGNATURE_SIZE or not verifies(sig, payload, expected_public):
            _fail(result, seq, "signature", f"signature does not verify with key {key_id}")
            ok = False
        if ok:
            result.verified += 1
        prev_id, prev_ts = computed_id, ts
        result.last_id, result.last_ts = computed_id, prev_ts
    if result.end > result.start and (result.end - 1) not in by_seq:
        result.last_id = result.last_ts = None


def _check_tree(result: ChunkResult, db: Database, log: str, leaves: list[bytes | None],
                sizes: Sequence[int]) -> None:
    """Rebuild the chunk's perfect subtrees, compare them with the stored nodes, and keep what the
    checkpoint and root checks need. With entries missing, only the part before the first gap is rebuilt
    (so checkpoints of sizes before the damage can still be confirmed)."""
    present = len(leaves)
    for i, h in enumerate(leaves):
        if h is None:
            present = i
            break
    if present < len(leaves):
        result.complete = False
        _fail(result, None, "merkle",
              f"tree over entries {result.start + present}..{result.end - 1} cannot be rebuilt")
    levels: list[list[bytes]] = []  # levels[k][i]: the rebuilt node (k, (start >> k) + i)
    sha256 = hashlib.sha256
    level_hashes: list[bytes] = [h for h in leaves[:present] if h is not None]
    first = result.start
    level = 0
    with db.connection() as conn:
        while level_hashes:
            base = first >> level
            count = len(level_hashes)
            levels.append(level_hashes)
            # One comparison of the whole level in the common case (all ``count`` nodes present, in index
            # order, equal); node by node only when it differs.
            if sql.node_hashes_in_range(conn, log, level, base, base + count) != level_hashes:
                stored = dict(sql.nodes_in_range(conn, log, level, base, base + count))
                for offset, h in enumerate(level_hashes):
                    if stored.get(base + offset) != h:
                        _fail(result, None, "merkle",
                              f"stored Merkle node (level {level}, index {base + offset}) is "
                              + ("missing" if base + offset not in stored else "wrong"))
            if count < 2 or level >= CHUNK_LEVEL:
                break
            level_hashes = [sha256(b"\x01" + left + right).digest()
                            for left, right in zip(level_hashes[0:count - 1:2], level_hashes[1::2],
                                                   strict=True)]
            level += 1
    if result.complete and result.end - result.start == CHUNK:
        result.top = levels[CHUNK_LEVEL][0]
    for size in sizes:
        if result.start < size <= result.start + present:
            result.partials[size] = [levels[k][i - (first >> k)] for k, i in decompose(result.start, size)]


def verify_chunk(url: str | Database, log: str, start: int, end: int, uses: Sequence[tuple[int, str]],
                 keys: Mapping[str, bytes], sizes: Sequence[int]) -> ChunkResult:
    """Verify entries [start, end) of ``log``; runs in a worker process or in-process."""
    db = url if isinstance(url, Database) else Database(url, pool_min=0, pool_max=1)
    try:
        result = ChunkResult(start, end)
        with db.connection() as conn:
            rows = sql.raw_rows(conn, log, start, end)
        leaves: list[bytes | None] = [None] * (end - start)
        _check_rows(result, log, rows, _KeyPlan(uses, keys), leaves)
        _check_tree(result, db, log, leaves, sizes)
        return result
    finally:
        if not isinstance(url, Database):
            db.close()


def verify_log(db: Database, log: str, *, workers: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Verify one whole log; ``progress(done_entries, total)`` is called as chunks finish."""
    # One snapshot, so that appends made while we read cannot make head, count, checkpoints and nodes
    # disagree (entries and nodes below the head are immutable, so chunks may be read afterwards).
    with db.snapshot() as conn:
        head = sql.head(conn, log)
        total = sql.count_entries(conn, log)
        uses = sql.key_uses(conn, log)
        keys = {k.key_id: k.public_key for k in sql.list_keys(conn)}
        checkpoints = sql.list_checkpoints(conn, log)
        size = 0 if head is None else head.tree_size
        beyond = sql.nodes_beyond(conn, log, size)
        negative = sql.negative_seqs(conn, log)
        # A damaged log may claim a last seq far beyond its row count (one altered seq column says
        # 2^40): then only the chunks that hold rows are read, and the empty ones count as one gap each.
        if total == size:
            chunk_ids: Sequence[int] = range((size + CHUNK - 1) >> CHUNK_LEVEL)
        else:
            chunk_ids = sql.occupied_chunks(conn, log, CHUNK_LEVEL)
    sizes = sorted({cp.tree_size for cp in checkpoints if 0 < cp.tree_size <= size} | ({size} if size else set()))
    chunks = [(c << CHUNK_LEVEL, min((c + 1) << CHUNK_LEVEL, size)) for c in chunk_ids]
    results: list[ChunkResult] = []
    done = 0
    if workers is None:
        workers = os.cpu_count() or 1
    if size >= PARALLEL_THRESHOLD and workers > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(verify_chunk, db.url, log, a, b, uses, keys, sizes) for a, b in chunks]
            for fut in futures:
                results.append(fut.result())
                done += results[-1].end - results[-1].start
                if progress:
                    progress(done, size)
    else:
        for a, b in chunks:
            results.append(verify_chunk(db, log, a, b, uses, keys, sizes))
            done += b - a
            if progress:
                progress(done, size)
    return _assemble(db, log, size, total, results, checkpoints, keys, beyond, negative)


@dataclass
class _Findings:
    """Failures found while assembling the report, counted by category (each chunk's, then the log's)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    failures: list[Failure] = field(default_factory=list)
    verified: int = 0

    def fail(self, seq: int | None, category: str, reason: str) -> None:
        self.counts[category] += 1
        self.failures.append(Failure(seq, category, reason))

    def absorb(self, chunk: ChunkResult) -> None:
        self.verified += chunk.verified
        for category, n in chunk.counts.items():
            self.counts[category] += n
        self.failures.extend(chunk.failures)


@dataclass(frozen=True)
class _RebuiltTree:
    """The tree rebuilt from the payloads: each chunk's subtrees, and the levels above the leading run of
    complete chunks (past a damaged chunk nothing above chunk level can be rebuilt)."""

    results: list[ChunkResult]
    upper: dict[NodeKey, bytes]
    lead: int  # results[:lead] are chunks 0 … lead-1, each complete

    def root_at(self, s: int) -> bytes | None:
        """The rebuilt root of the first ``s`` entries, or None when entries it needs are missing."""
        if s == 0:
            return None
        results = self.results
        chunk_no = (s - 1) >> CHUNK_LEVEL
        if chunk_no >= len(results) or chunk_no > self.lead or results[chunk_no].start != chunk_no << CHUNK_LEVEL:
            return None
        hashes: list[bytes] = []
        for k in decompose(0, s):
            if k[0] >= CHUNK_LEVEL:
                if k not in self.upper:
                    return None
                hashes.append(self.upper[k])
        if any(k[0] < CHUNK_LEVEL for k in decompose(0, s)):
            partial = results[chunk_no].partials.get(s)
            if partial is None:
                return None
            hashes += partial
        return fold(hashes)


def _join_chunks(results: list[ChunkResult], found: _Findings) -> None:
    """Add up the chunks and check what no chunk can see alone: the links and gaps between chunks."""
    prev: ChunkResult | None = None
    for res in results:
        found.absorb(res)
        gap_start = 0 if prev is None else prev.end
        if res.start > gap_start:  # whole chunks without a single row
            found.counts["chain"] += res.start - gap_start - 1
            found.fail(gap_start, "chain", f"entries {gap_start}..{res.start - 1} are missing (gap in the sequence)")
            prev = None
        if res.first_present:
            if res.start == 0 and res.first_parent is not None:
                found.fail(0, "chain", "the first entry has a parent")
            elif res.start > 0 and prev is not None and prev.last_id is not None and \
                    res.first_parent != prev.last_id:
                found.fail(res.start, "chain", f"parent does not link to entry {res.start - 1}")
            if prev is not None and prev.last_ts is not None and res.first_ts is not None and \
                    res.first_ts < prev.last_ts:
                found.fail(res.start, "retrocausation", "timestamp is earlier than its parent's")
        prev = res


def _check_extent(results: list[ChunkResult], size: int, total: int, negative: Sequence[int],
                  beyond: Sequence[NodeKey], found: _Findings) -> None:
    """The log as a whole: its row count, impossible seqs, and nodes covering entries past its end."""
    if results and results[-1].end < size:  # cannot happen: the last seq's chunk always holds a row
        found.fail(results[-1].end, "chain", "entries after the last verified chunk are missing")
    if total != size:
        found.fail(None, "chain", f"log holds {total} entries but its last seq says {size}")
    for seq in negative:
        found.fail(None, "chain", f"an entry is stored with the impossible seq {seq}")
    for level, idx in beyond:
        found.fail(None, "merkle", f"stored Merkle node (level {level}, index {idx}) covers entries beyond the "
                   f"log's end ({size}): entries were removed")


def _rebuild_upper(db: Database, log: str, results: list[ChunkResult], found: _Findings) -> _RebuiltTree:
    """Rebuild the levels above the chunks from the roots of the leading complete chunks; compare each node
    with storage."""
    upper: dict[NodeKey, bytes] = {}
    lead = 0
    while lead < len(results) and results[lead].complete and results[lead].start == lead << CHUNK_LEVEL:
        lead += 1
    tops = [r.top for r in results[:lead] if r.top is not None]
    level, hashes = CHUNK_LEVEL, tops
    with db.connection() as conn:
        while len(hashes) >= 2:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
            level += 1
            stored = dict(sql.nodes_in_range(conn, log, level, 0, len(hashes)))
            for idx, h in enumerate(hashes):
                upper[(level, idx)] = h
                if stored.get(idx) != h:
                    found.fail(None, "merkle", f"stored Merkle node (level {level}, index {idx}) is wrong or missing")
    for r in results[:lead]:
        if r.top is not None:
            upper[(CHUNK_LEVEL, r.start >> CHUNK_LEVEL)] = r.top
    return _RebuiltTree(results, upper, lead)


def _check_checkpoints(log: str, size: int, checkpoints: Sequence[sql.StoredCheckpoint], keys: Mapping[str, bytes],
                       tree: _RebuiltTree, found: _Findings) -> bool:
    """Every stored checkpoint: its signature, its origin, and its root against the rebuilt tree at its size
    (all matching one rebuilt tree means they are consistent with each other). True when all hold."""
    ok = True
    for cp in checkpoints:
        public = keys.get(cp.key_id)
        try:
            if public is None:
                raise VerificationError(f"signed by unknown key {cp.key_id}")
            parsed = verify_checkpoint(cp.note, public)
            if not parsed.origin.endswith(f"knhk/{log}"):
                raise VerificationError(f"origin {parsed.origin!r} is not this log's")
            if parsed.tree_size != cp.tree_size or parsed.root_hash != cp.root_hash:
                raise VerificationError("stored size or root disagrees with the signed note")
        except Exception as exc:  # VerificationError, or a note so damaged it cannot be read: either way refused
            ok = False
            found.fail(cp.tree_size, "checkpoint", f"checkpoint at size {cp.tree_size}: {exc}")
            continue
        if cp.tree_size > size:
            ok = False
            found.fail(cp.tree_size, "checkpoint",
                       f"checkpoint at size {cp.tree_size} is beyond the log's end ({size}): entries were removed")
            continue
        expected = tree.root_at(cp.tree_size)
        if expected is None:
            ok = False
            found.fail(cp.tree_size, "checkpoint",
                       f"checkpoint at size {cp.tree_size} cannot be confirmed: entries it covers are missing")
        elif expected != cp.root_hash:
            ok = False
            found.fail(cp.tree_size, "checkpoint",
                       f"checkpoint at size {cp.tree_size} is not consistent with the stored log "
                       "(its root differs from the rebuilt tree: history was rewritten)")
    return ok


def _assemble(db: Database, log: str, size: int, total: int, results: list[ChunkResult],
              checkpoints: Sequence[sql.StoredCheckpoint], keys: Mapping[str, bytes],
              beyond: Sequence[NodeKey] = (), negative: Sequence[int] = ()) -> VerifyReport:
    """The report of a whole log from its verified chunks: join the chunks, check the log's extent, rebuild
    the tree above the chunks, check every checkpoint against it."""
    found = _Findings()
    _join_chunks(results, found)
    _check_extent(results, size, total, negative, beyond, found)
    tree = _rebuild_upper(db, log, results, found)
    root = tree.root_at(size) if size else hashlib.sha256(b"").digest()
    checkpoint_ok = _check_checkpoints(log, size, checkpoints, keys, tree, found)
    # Entry failures first, in seq order (the first one is "the first bad seq"), then tree and checkpoint
    # failures (whose seq is a tree size), then failures of the log as a whole.
    failures = sorted(found.failures, key=lambda f: (f.category in ("merkle", "checkpoint"), f.seq is None,
                                                     f.seq if f.seq is not None else 0))
    counts = found.counts
    return VerifyReport(
        log=log,
        total_count=total,
        verified_count=found.verified,
        signature_failures=counts["signature"],
        chain_breaks=counts["chain"],
        retrocausation_violations=counts["retrocausation"],
        row_mismatches=counts["row"],
        merkle_node_mismatches=counts["merkle"],
        tree_size=size,
        root_hash=root.hex() if root is not None else "",
        checkpoint_consistent=checkpoint_ok,
        checkpoints_checked=len(checkpoints),
        last_verified_timestamp=format_rfc3339(SYSTEM_CLOCK.now_us()),
        failures=failures[:MAX_LISTED_FAILURES],
    )
