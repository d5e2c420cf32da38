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
signatures + evicted + evidence). Entries are kept in columns (knhk.detection.columns, about 90 bytes per
entry per window) rather than a tuple each, so a million observations in the drift window fit in memory.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from typing import Any

from knhk.detection.columns import Entry, EntryColumns, Stamps
from knhk.detection.pattern import DetectorConfig
from knhk.observations.model import Observation
from knhk.proof.evidence import evidence_leaf

__all__ = ["Entry", "EntryColumns", "SectorWindows", "Signature", "SignatureKey", "json_kinds", "signature_key",
           "type_name"]

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


class Signature:
    """Observations of one event type with one set of value keys (and value types) in the drift window."""

    __slots__ = ("entries", "event_type", "fields", "samples", "types")

    def __init__(self, key: SignatureKey) -> None:
        self.event_type = key[0]
        self.fields = tuple(name for name, _ in key[1])
        self.types = dict(key[1])
        self.entries = EntryColumns()
        self.samples: list[tuple[int, int, Mapping[str, Any]]] = []  # ≤ 5 most recent, oldest first

    def add(self, ts: int, n: int, obs_id: str, seq: int | None, leaf: bytes, value: Mapping[str, Any]) -> None:
        self.entries.add_entry(ts, n, obs_id, seq, leaf)
        sample = (ts, n, value)
        if len(self.samples) < SAMPLE_OBSERVATIONS:
            insort(self.samples, sample, key=lambda s: (s[0], s[1]))
        elif (ts, n) > (self.samples[0][0], self.samples[0][1]):
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
        self.by_type: dict[str, EntryColumns] = {}
        self.error_all = Stamps()
        self.errors = EntryColumns()
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
            obs_id, seq, leaf = obs.id, obs.seq, evidence_leaf(obs.id, obs.content_hash)
            if hf_floor is None or ts >= hf_floor:
                per_type = self.by_type.get(obs.event_type)
                if per_type is None:
                    per_type = self.by_type[obs.event_type] = EntryColumns()
                per_type.add_entry(ts, n, obs_id, seq, leaf)
            if error_floor is None or ts >= error_floor:
                self.error_all.add(ts, n)
                if obs.is_error:
                    self.errors.add_entry(ts, n, obs_id, seq, leaf)
            if drift_floor is None or ts >= drift_floor:
                key = signature_key(obs)
                signature = self.signatures.get(key)
                if signature is None:
                    signature = self.signatures[key] = Signature(key)
                signature.add(ts, n, obs_id, seq, leaf, obs.value)

    def advance(self, now_us: int) -> int:
        """Move time forward to ``now_us`` (never back), evict what fell out; return the effective now."""
        now = now_us if self.now_us is None else max(now_us, self.now_us)
        self.now_us = now
        floor = now - self.hf_us
        for event_type in [t for t, entries in self.by_type.items() if entries and entries.first_ts < floor]:
            entries = self.by_type[event_type]
            entries.evict(floor)
            if not entries:
                del self.by_type[event_type]
        self.error_all.evict(now - self.error_us)
        self.errors.evict(now - self.error_us)
        floor = now - self.drift_us
        for key in [k for k, s in self.signatures.items() if s.entries and s.entries.first_ts < floor]:
            signature = self.signatures[key]
            signature.entries.evict(floor)
            if not signature.entries:
                del self.signatures[key]
        return now
