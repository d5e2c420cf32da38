"""Memory of one sector's detection windows holding N observations (issue 13: < 1 GB with 1 M observations).

Feeds N observations (default 1,000,000, server-style uuid7 ids, the type mix of bench_detection) spread over
the 5-minute drift window into :class:`knhk.detection.windows.SectorWindows` — so every one is in the drift
window and the last 60 s of them in the high-frequency and error windows, as when a million arrive within a
few minutes — and prints the resident-set growth of the process. The same run repeats this, in a fresh
process, with the layout the windows used before issue 13 (a tuple per entry in deques, rebuilt here as the
baseline), and prints both figures and their ratio. Observations are generated in batches and not retained,
so the figure is the windows' own memory. Usage:

    .venv/bin/python bench/bench_window_memory.py [--observations 1000000]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from bisect import insort
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uuid_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knhk.detection.pattern import DetectorConfig
from knhk.detection.windows import SectorWindows, signature_key
from knhk.observations.model import Observation
from knhk.proof.evidence import evidence_leaf

US = 1_000_000
DRIFT_S = 300
BATCH = 1000


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def observations(total: int, start_us: int) -> Iterator[list[tuple[int, Observation]]]:
    """Batches of (arrival, observation), timestamps evenly over the drift window."""
    rng = random.Random(13)
    spacing = DRIFT_S * US // total
    batch: list[tuple[int, Observation]] = []
    for n in range(total):
        roll = rng.random()
        value: dict[str, Any]
        if roll < 0.70:
            event_type, value = "payment.created", {"transaction_amount": rng.randint(1, 5000), "currency": "EUR"}
        elif roll < 0.95:
            event_type, value = "user.login", {"user": f"u{rng.randint(1, 5000)}"}
        elif roll < 0.98:
            event_type, value = "payment.error", {"code": "E_TIMEOUT"}
        else:
            event_type, value = "refund.created", {"amount": rng.randint(1, 300)}
        ts = start_us + n * spacing
        obs_id = str(uuid_utils.uuid7())
        content_hash = hashlib.sha256(obs_id.encode()).hexdigest()
        batch.append((n + 1, Observation(obs_id, event_type, "finance", ts, ts, value, {}, content_hash,
                                         seq=n + 1)))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class TupleWindows:
    """The pre-issue-13 layout: one (ts, arrival, id, seq, leaf) tuple per entry, shared by the windows it
    is in, in deques per event type / error window / signature; (ts, arrival) tuples for the error count."""

    def __init__(self, config: DetectorConfig) -> None:
        self.hf_us = config.window_us("high_frequency_window_s")
        self.error_us = config.window_us("error_window_s")
        self.drift_us = config.window_us("drift_window_s")
        self.by_type: dict[str, deque[tuple[Any, ...]]] = {}
        self.error_all: deque[tuple[int, int]] = deque()
        self.errors: deque[tuple[Any, ...]] = deque()
        self.signatures: dict[Any, deque[tuple[Any, ...]]] = {}

    @staticmethod
    def _insert(entries: deque[Any], entry: tuple[Any, ...]) -> None:
        if not entries or entry >= entries[-1]:
            entries.append(entry)
        else:
            insort(entries, entry)

    @staticmethod
    def _evict(entries: deque[Any], floor: int) -> None:
        while entries and entries[0][0] < floor:
            entries.popleft()

    def add(self, items: list[tuple[int, Observation]]) -> None:
        for n, obs in items:
            entry = (obs.ts_us, n, obs.id, obs.seq, evidence_leaf(obs.id, obs.content_hash))
            self._insert(self.by_type.setdefault(obs.event_type, deque()), entry)
            self._insert(self.error_all, (obs.ts_us, n))
            if obs.is_error:
                self._insert(self.errors, entry)
            self._insert(self.signatures.setdefault(signature_key(obs), deque()), entry)

    def advance(self, now: int) -> None:
        for entries in self.by_type.values():
            self._evict(entries, now - self.hf_us)
        self._evict(self.error_all, now - self.error_us)
        self._evict(self.errors, now - self.error_us)
        for entries in self.signatures.values():
            self._evict(entries, now - self.drift_us)


def measure(layout: str, total: int) -> dict[str, Any]:
    """Build one layout's windows in this process; RSS growth and build time."""
    config = DetectorConfig()
    start = 1_800_000_000 * US
    windows: SectorWindows | TupleWindows = (SectorWindows("finance", config) if layout == "columns"
                                             else TupleWindows(config))
    gc.collect()
    before = rss_kb()
    began = time.perf_counter()
    for batch in observations(total, start):
        windows.add(batch)
        windows.advance(batch[-1][1].ts_us)
    elapsed = time.perf_counter() - began
    gc.collect()
    grown = rss_kb() - before
    drift = (sum(len(s.entries) for s in windows.signatures.values()) if isinstance(windows, SectorWindows)
             else sum(len(entries) for entries in windows.signatures.values()))
    sizes = {"drift": drift,
             "high_frequency": sum(len(e) for e in windows.by_type.values()), "error_all": len(windows.error_all)}
    return {"layout": layout, "rss_growth_mb": round(grown / 1024, 1), "build_s": round(elapsed, 1),
            "bytes_per_observation": round(grown * 1024 / total), "entries": sizes}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--observations", type=int, default=1_000_000)
    ap.add_argument("--layout", choices=["columns", "tuples"], help="measure one layout in this process")
    args = ap.parse_args()
    if args.layout:
        print(json.dumps(measure(args.layout, args.observations)))
        return 0
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    results = {}
    for layout in ("tuples", "columns"):
        out = subprocess.run([sys.executable, __file__, "--observations", str(args.observations),
                              "--layout", layout], check=True, capture_output=True, text=True).stdout
        results[layout] = json.loads(out)
        print(out.strip())
    ratio = results["columns"]["rss_growth_mb"] / results["tuples"]["rss_growth_mb"]
    print(f"{args.observations:,} observations in one sector's windows: tuple-per-entry layout "
          f"{results['tuples']['rss_growth_mb']} MB, columns {results['columns']['rss_growth_mb']} MB "
          f"(ratio {ratio:.2f}); load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
