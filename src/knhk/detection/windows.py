"""Incremental windowed state of one sector, read by the detectors (SPEC §3: windowed counters, no rescans).

Windows are measured on observation timestamps. At time ``now`` a window of W seconds holds the observations
with ``timestamp ≥ now − W``: an observation exactly W seconds old is still inside, one a microsecond older
is not; a slightly future-stamped (skew-accepted) observation counts as recent. Time never goes backwards
here: ``advance`` keeps the largest ``now`` seen (a clock stepping back is treated as no time passing).

Kept per sector, each sorted by (timestamp, arrival) and evicted from the old end as time advances:

- per event type, the entries of the high-frequency window (its length is the count);
- all entries and the error entries of the error window;
- per *signature* (event type + the value's keys and their Python types) the entries of the drift window and
  the values of its 5 most recent observations (samples). Drift is re-judged at detect time against the
  current snapshot per signature, so a promotion that declares a type or field clears its drift at once.
- the latest timestamp ever seen (heartbeat).

An observation arriving out of order is inserted in place (rare: skew is bounded); one already older than a
window's start is not added to that window. Cost per observation O(1) amortised; per detection O(types +
signatures + evicted + evidence).
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from knhk.detection.pattern import DetectorConfig
from knhk.observations.model import Observation
from knhk.proof.evidence import evidence_leaf

#: (timestamp µs, arrival number, observation id, ingest seq, evidence leaf hash): ordered by the first two
#: (unique); the last two let a receipt commit to every observation a pattern rests on (knhk.proof.evidence)
Entry = tuple[int, int, str, int | None, bytes]
SignatureKey = tuple[str, tuple[tuple[str, str], ...]]
SAMPLE_OBSERVATIONS = 5


JSON_KINDS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "NoneType": "null",
              "dict": "object", "list": "array"}


def json_kinds(type_names: Iterable[str]) -> list[str]:
    """Python type names as JSON kinds (string, integer, number, boolean, null, object, array), sorted."""
    return sorted({JSON_KINDS.get(name, name) for name in type_names})


def type_name(value: Any) -> str:
    """The Python type of a JSON value as detectors report it (str, int, float, bool, NoneType, dict, list)."""
    return type(value).__name__


def signature_key(obs: Observation) -> SignatureKey:
    return obs.event_type, tuple((k, type_name(obs.value[k])) for k in sorted(obs.value))


def insert(entries: deque[Any], entry: tuple[Any, ...]) -> None:
    if not entries or entry >= entries[-1]:
        entries.append(entry)
    else:
        insort(entries, entry)


def evict(entries: deque[Any], floor_us: int) -> None:
    while entries and entries[0][0] < floor_us:
        entries.popleft()


def tail(entries: deque[Entry], count: int) -> list[Entry]:
    """The last ``count`` entries, oldest first."""
    if len(entries) <= count:
        return list(entries)
    out = list(islice(reversed(entries), count))
    out.reverse()
    return out


class Signature:
    """Observations of one event type with one set of value keys (and value types) in the drift window."""

    __slots__ = ("entries", "event_type", "fields", "samples", "types")

    def __init__(self, key: SignatureKey) -> None:
        self.event_type = key[0]
        self.fields = tuple(name for name, _ in key[1])
        self.types = dict(key[1])
        self.entries: deque[Entry] = deque()
        self.samples: list[tuple[int, int, Mapping[str, Any]]] = []  # ≤ 5 most recent, oldest first

    def add(self, entry: Entry, value: Mapping[str, Any]) -> None:
        insert(self.entries, entry)
        sample = (entry[0], entry[1], value)
        if len(self.samples) < SAMPLE_OBSERVATIONS:
            insort(self.samples, sample, key=lambda s: (s[0], s[1]))
        elif (entry[0], entry[1]) > (self.samples[0][0], self.samples[0][1]):
            self.samples.pop(0)
            insort(self.samples, sample, key=lambda s: (s[0], s[1]))

    def recent_samples(self) -> list[tuple[int, int, Mapping[str, Any]]]:
        """The samples that lie in the window (the most recent min(count, 5)), oldest first."""
        keep = min(len(self.entries), len(self.samples))
        return self.samples[len(self.samples) - keep:]


class SectorWindows:
    """The windows of one sector under one :class:`DetectorConfig`."""

    def __init__(self, sector: str, config: DetectorConfig) -> None:
        self.sector = sector
        self.config = config
        self.hf_us = config.window_us("high_frequency_window_s")
        self.error_us = config.window_us("error_window_s")
        self.drift_us = config.window_us("drift_window_s")
        self.silence_us = config.window_us("silence_s")
        self.now_us: int | None = None
        self.last_ts_us: int | None = None
        self.monitored = False
        self.by_type: dict[str, deque[Entry]] = {}
        self.error_all: deque[tuple[int, int]] = deque()
        self.errors: deque[Entry] = deque()
        self.signatures: dict[SignatureKey, Signature] = {}

    def add(self, observations: Iterable[tuple[int, Observation]]) -> None:
        """Add observations with their arrival numbers."""
        now = self.now_us
        hf_floor = None if now is None else now - self.hf_us
        error_floor = None if now is None else now - self.error_us
        drift_floor = None if now is None else now - self.drift_us
        for n, obs in observations:
            ts = obs.ts_us
            self.monitored = True
            if self.last_ts_us is None or ts > self.last_ts_us:
                self.last_ts_us = ts
            entry: Entry = (ts, n, obs.id, obs.seq, evidence_leaf(obs.id, obs.content_hash))
            if hf_floor is None or ts >= hf_floor:
                per_type = self.by_type.get(obs.event_type)
                if per_type is None:
                    per_type = self.by_type[obs.event_type] = deque()
                insert(per_type, entry)
            if error_floor is None or ts >= error_floor:
                insert(self.error_all, (ts, n))
                if obs.is_error:
                    insert(self.errors, entry)
            if drift_floor is None or ts >= drift_floor:
                key = signature_key(obs)
                signature = self.signatures.get(key)
                if signature is None:
                    signature = self.signatures[key] = Signature(key)
                signature.add(entry, obs.value)

    def advance(self, now_us: int) -> int:
        """Move time forward to ``now_us`` (never back), evict what fell out; return the effective now."""
        now = now_us if self.now_us is None else max(now_us, self.now_us)
        self.now_us = now
        floor = now - self.hf_us
        for event_type in [t for t, entries in self.by_type.items() if entries and entries[0][0] < floor]:
            entries = self.by_type[event_type]
            evict(entries, floor)
            if not entries:
                del self.by_type[event_type]
        evict(self.error_all, now - self.error_us)
        evict(self.errors, now - self.error_us)
        floor = now - self.drift_us
        for key in [k for k, s in self.signatures.items() if s.entries and s.entries[0][0] < floor]:
            signature = self.signatures[key]
            evict(signature.entries, floor)
            if not signature.entries:
                del self.signatures[key]
        return now
