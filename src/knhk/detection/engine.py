"""The detection engine (SPEC §3 Analyze): keeps every sector's windows up to date and runs the detectors.

``observe(observations)`` is the ingest subscriber (``Ingestor(on_ingested=engine.observe)``); ``prime``
rebuilds the windows at start-up from stored recent observations; ``detect(sector, schema, now_us)`` advances
the sector's windows to ``now`` and runs every detector against them and the sector's *current* schema.
Nothing is rescanned from storage. A detector that raises is logged and reported in the result's ``errors``;
the others still run. Patterns below the sector's confidence threshold for their kind (a learned threshold
when given, else the sector's ``confidence_threshold``; inclusive) are returned as ``dropped``; the rest are
ordered by confidence (descending), then name.

A sector is monitored for silence (``no_observations``) once it has been observed or primed, or after
``monitor(sector)``. Thread-safe: one lock guards all windows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from knhk.detection.builtin import BUILTIN_DETECTORS, Detector, population_of
from knhk.detection.pattern import DetectionResult, DetectorConfig, DetectorFailure, Pattern, rank
from knhk.detection.windows import SectorWindows
from knhk.observations.model import Observation
from knhk.ontology.schema import SectorSchema
from knhk.ops.clock import Clock

log = logging.getLogger("knhk.detection")


class DetectionEngine:
    """Incremental detection for every sector of one process."""

    def __init__(self, clock: Clock, *, configs: Mapping[str, DetectorConfig] | None = None,
                 default_config: DetectorConfig | None = None,
                 detectors: Sequence[Detector] = BUILTIN_DETECTORS) -> None:
        self.clock = clock
        self.default_config = default_config or DetectorConfig()
        self._configs = dict(configs or {})
        self.detectors = tuple(detectors)
        self._windows: dict[str, SectorWindows] = {}
        self._arrivals = 0
        self._lock = threading.Lock()

    # -- configuration --------------------------------------------------------------------------------
    def config(self, sector: str) -> DetectorConfig:
        return self._configs.get(sector, self.default_config)

    def configure(self, sector: str, config: DetectorConfig) -> None:
        """Set a sector's detector settings. Its windows restart empty (prime again to refill them)."""
        with self._lock:
            self._configs[sector] = config
            old = self._windows.pop(sector, None)
            if old is not None:
                fresh = self._sector(sector)
                fresh.monitored = old.monitored
                fresh.last_ts_us = old.last_ts_us

    def monitor(self, sector: str) -> None:
        """Watch a sector for silence even before its first observation."""
        with self._lock:
            self._sector(sector).monitored = True

    def sectors(self) -> list[str]:
        with self._lock:
            return sorted(self._windows)

    def _sector(self, sector: str) -> SectorWindows:
        windows = self._windows.get(sector)
        if windows is None:
            windows = self._windows[sector] = SectorWindows(sector, self.config(sector))
        return windows

    # -- feeding --------------------------------------------------------------------------------------
    def observe(self, observations: Iterable[Observation]) -> None:
        """Add newly ingested observations to their sectors' windows."""
        by_sector: dict[str, list[tuple[int, Observation]]] = {}
        with self._lock:
            for obs in observations:
                self._arrivals += 1
                by_sector.setdefault(obs.sector, []).append((self._arrivals, obs))
            now = self.clock.now_us()
            for sector, items in by_sector.items():
                windows = self._sector(sector)
                windows.add(items)
                windows.advance(now)

    def prime(self, observations: Iterable[Observation]) -> None:
        """Rebuild windows at start-up from stored observations (e.g. everything of the last drift window)."""
        self.observe(observations)

    def window_size(self, sector: str, now_us: int | None = None) -> int:
        """How many of the sector's observations fall in its error-spike window (the last 60 s by default)."""
        with self._lock:
            windows = self._sector(sector)
            windows.advance(self.clock.now_us() if now_us is None else now_us)
            return len(windows.error_all)

    # -- detecting ------------------------------------------------------------------------------------
    def detect(self, sector: str, schema: SectorSchema | None, now_us: int | None = None, *,
               thresholds: Mapping[str, int] | None = None, populations: bool = False) -> DetectionResult:
        """Run every detector on ``sector`` at ``now_us`` (default: the clock) against its current schema.

        ``thresholds`` maps a pattern kind to a learned confidence threshold in thousandths. ``populations``:
        also take, for each pattern kept, every window entry it rests on (``Pattern.population``), as the
        loop does to commit its receipts to all of their evidence.
        """
        with self._lock:
            windows = self._sector(sector)
            now = windows.advance(self.clock.now_us() if now_us is None else now_us)
            found: list[Pattern] = []
            failures: list[DetectorFailure] = []
            for detector in self.detectors:
                try:
                    found.extend(detector.detect(windows, schema, now))
                except Exception as exc:
                    log.exception("detector %s failed on sector %s", detector.name, sector)
                    failures.append(DetectorFailure(detector.name, f"{type(exc).__name__}: {exc}"))
            config = windows.config
            kept, dropped = rank(found, thresholds or {}, config.threshold_milli)
            if populations:
                kept = tuple(replace(p, population=population_of(windows, schema, p)) for p in kept)
        return DetectionResult(sector, now, kept, dropped, tuple(failures))
