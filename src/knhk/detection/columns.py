"""Compact, time-ordered columns of window entries (the memory of the detection windows, SPEC §12: < 1 GB).

A window can hold most of a million observations at once (every observation of the 5-minute drift window),
so its entries are not kept as one Python tuple each (≈ 330 bytes with their ints, id string and leaf hash)
but in columns: ``array('q')`` of timestamps, arrival numbers and ingest sequence numbers, one ``bytearray``
of 32-byte evidence leaves and one of the UTF-8 observation ids (each ended by a NUL) with an ``array('H')`` of
their lengths
(ids are 1–128 ASCII characters, knhk.observations.model) — about 90 bytes per entry.

Entries stay sorted by (timestamp, arrival). Appending in order is O(1); an out-of-order entry (rare: skew is
bounded) is inserted in place, O(entries after it). Eviction by time moves a head index forward and compacts
the columns when the dead prefix is at least an eighth of them (memory held by evicted entries stays
under 1/7 of the live ones; each compaction moves the live part once, O(1) amortised). Readers get entries back
as :data:`Entry` tuples only when they ask (``tail``, iteration: populations), or just the ids the evidence
lists (``tail_ids``, ``tail_keys``), each built a column slice at a time.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Iterator

#: (timestamp µs, arrival number, observation id, ingest seq, evidence leaf hash): ordered by the first two
#: (unique); the last two let a receipt commit to every observation a pattern rests on (knhk.proof.evidence)
Entry = tuple[int, int, str, int | None, bytes]

LEAF_BYTES = 32
MAX_ID_BYTES = 65535
ID_END = "\x00"  # each stored id is followed by a NUL (ids never contain one), so a run of ids splits in C
_ID_END = ID_END.encode()
_LEAF = struct.Struct(f"{LEAF_BYTES}s")
NO_SEQ = -(2 ** 63)  # an observation not yet given an ingest sequence number (seq None)
_COMPACT_MIN = 1024  # dead head entries before compaction is considered
_COMPACT_SHARE = 8  # ... and when they are at least 1/8 of the columns


class _TimeOrdered:
    """(timestamp, arrival) columns in order with a head index, evicted by time."""

    __slots__ = ("_head", "_n", "_ts")

    def __init__(self) -> None:
        self._ts = array("q")
        self._n = array("q")
        self._head = 0

    def __len__(self) -> int:
        return len(self._ts) - self._head

    def __bool__(self) -> bool:
        return len(self._ts) > self._head

    @property
    def first_ts(self) -> int:
        """The oldest timestamp (the window must not be empty)."""
        if not self:
            raise IndexError("empty window")
        return self._ts[self._head]

    @property
    def last_ts(self) -> int:
        """The newest timestamp (the window must not be empty)."""
        if not self:
            raise IndexError("empty window")
        return self._ts[-1]

    def _position(self, ts: int, n: int) -> int:
        """Where (ts, n) goes: after every entry ordered before it (``len`` of the columns when it is last)."""
        size = len(self._ts)
        if size == self._head or (ts, n) >= (self._ts[-1], self._n[-1]):
            return size
        pos = bisect_right(self._ts, ts - 1, self._head, size)  # first entry with timestamp ≥ ts
        while pos < size and self._ts[pos] == ts and self._n[pos] < n:
            pos += 1
        return pos

    def _evict_count(self, floor_us: int) -> int:
        """How many live entries are older than ``floor_us``."""
        if not self or self._ts[self._head] >= floor_us:
            return 0
        return bisect_right(self._ts, floor_us - 1, self._head, len(self._ts)) - self._head

    def evict(self, floor_us: int) -> None:
        """Drop the entries with timestamp < ``floor_us``."""
        gone = self._evict_count(floor_us)
        if gone:
            self._drop(gone)

    def _drop(self, gone: int) -> None:
        self._head += gone
        if (self._head >= _COMPACT_MIN and self._head * _COMPACT_SHARE >= len(self._ts)) or self._head == len(self._ts):
            self._compact()

    def _compact(self) -> None:
        # fresh exact-size copies: ``del`` on a bytearray keeps its buffer until it halves
        self._ts = self._ts[self._head:]
        self._n = self._n[self._head:]
        self._head = 0


class Stamps(_TimeOrdered):
    """(timestamp, arrival) pairs: a window that only needs its count."""

    __slots__ = ()

    def add(self, ts: int, n: int) -> None:
        pos = self._position(ts, n)
        if pos == len(self._ts):
            self._ts.append(ts)
            self._n.append(n)
        else:
            self._ts.insert(pos, ts)
            self._n.insert(pos, n)


class EntryColumns(_TimeOrdered):
    """Window entries (:data:`Entry`) in columns, oldest first."""

    __slots__ = ("_id_bytes", "_id_len", "_leaf", "_seq")

    def __init__(self) -> None:
        super().__init__()
        self._seq = array("q")
        self._leaf = bytearray()
        self._id_len = array("H")
        self._id_bytes = bytearray()

    def add_entry(self, ts: int, n: int, obs_id: str, seq: int | None, leaf: bytes) -> None:
        """Insert one entry in (timestamp, arrival) order."""
        raw = obs_id.encode() + _ID_END
        if len(raw) > MAX_ID_BYTES or len(leaf) != LEAF_BYTES or _ID_END in raw[:-1]:
            raise ValueError(f"an observation id of at most {MAX_ID_BYTES - 1} bytes without NUL and a 32-byte "
                             "leaf hash expected")
        code = NO_SEQ if seq is None else seq
        stamps = self._ts
        size = len(stamps)
        if size == self._head or ts > stamps[-1] or (ts == stamps[-1] and n >= self._n[-1]):
            pos = size
        else:
            pos = self._position(ts, n)
        if pos == size:
            stamps.append(ts)
            self._n.append(n)
            self._seq.append(code)
            self._leaf += leaf
            self._id_len.append(len(raw))
            self._id_bytes += raw
            return
        at = len(self._id_bytes) - sum(self._id_len[pos:])
        self._ts.insert(pos, ts)
        self._n.insert(pos, n)
        self._seq.insert(pos, code)
        self._leaf[pos * LEAF_BYTES:pos * LEAF_BYTES] = leaf
        self._id_len.insert(pos, len(raw))
        self._id_bytes[at:at] = raw

    def _rows(self, first: int) -> Iterator[Entry]:
        """Entries from column position ``first`` on, built a column slice at a time (no per-entry indexing)."""
        id_start = len(self._id_bytes) - sum(self._id_len[first:])
        ids = self._id_bytes[id_start:].decode().split(ID_END)
        ids.pop()  # after the last terminator
        seqs = [None if seq == NO_SEQ else seq for seq in self._seq[first:]]
        leaves = [leaf for (leaf,) in _LEAF.iter_unpack(self._leaf[first * LEAF_BYTES:])]
        return zip(self._ts[first:], self._n[first:], ids, seqs, leaves, strict=True)

    def __iter__(self) -> Iterator[Entry]:
        return self._rows(self._head)

    def tail(self, count: int) -> list[Entry]:
        """The last ``count`` entries (all when fewer), oldest first."""
        return list(self._rows(max(self._head, len(self._ts) - max(count, 0))))

    def tail_ids(self, count: int) -> tuple[str, ...]:
        """The ids of the last ``count`` entries (all when fewer), oldest first."""
        first = max(self._head, len(self._ts) - max(count, 0))
        ids = self._id_bytes[len(self._id_bytes) - sum(self._id_len[first:]):].decode().split(ID_END)
        ids.pop()
        return tuple(ids)

    def tail_keys(self, count: int) -> list[tuple[int, int, str]]:
        """(timestamp, arrival, id) of the last ``count`` entries (all when fewer), oldest first."""
        first = max(self._head, len(self._ts) - max(count, 0))
        return list(zip(self._ts[first:], self._n[first:], self.tail_ids(count), strict=True))

    def _compact(self) -> None:
        head = self._head
        self._id_bytes = self._id_bytes[sum(self._id_len[:head]):]
        self._id_len = self._id_len[head:]
        self._seq = self._seq[head:]
        self._leaf = self._leaf[head * LEAF_BYTES:]
        super()._compact()
