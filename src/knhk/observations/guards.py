"""Hot-path guards evaluated on ingest (SPEC §2): value bounds and rate limits declared in Σ.

Value guards (``max_value`` / ``min_value``) compare the named field of the observation's value as a
:class:`~decimal.Decimal` (a JSON float through its shortest repr, so ``1000000.1`` is exactly that): the
bound itself passes, anything beyond it violates. A missing field, ``null`` or a non-numeric value (a string,
a boolean) does not violate — conformance reports wrong datatypes.

Rate-limit guards (``rate_limit``) count events of the guard's event type (all types of the sector when the
guard names none) by their timestamp. The guard is exceeded when the latest ``limit + 1`` events lie within
``window_s`` seconds (inclusive), i.e. more than ``limit`` events in some ``window_s`` span ending at the
latest one. Only those ``limit + 1`` timestamps are kept, so each event costs O(log limit) and memory is
bounded by the limit. A violation is reported once per excursion: when the guard becomes exceeded; it is
armed again once the latest ``limit + 1`` events no longer fit in the window. Counting is per process.
"""

from __future__ import annotations

import threading
from bisect import insort
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from knhk.observations.model import Observation
from knhk.ontology.schema import GuardSpec, SectorSchema

VALUE_KINDS = ("max_value", "min_value")
RATE_LIMIT = "rate_limit"
ALERT_LEVELS = {"critical": "critical", "high": "critical", "medium": "warning", "low": "info"}


def alert_level(criticality: str) -> str:
    """The alert level raised for a violated guard of this criticality (unknown criticality → warning)."""
    return ALERT_LEVELS.get(criticality, "warning")


@dataclass(frozen=True, slots=True)
class GuardViolation:
    """One guard violated by one observation."""

    guard_id: str
    kind: str
    event_type: str
    field: str | None
    value: str  # the offending value as a decimal string (the event count for rate limits)
    limit: str
    criticality: str
    observation_id: str
    window_s: int | None = None

    @property
    def level(self) -> str:
        return alert_level(self.criticality)

    @property
    def reason(self) -> str:
        """A sentence for people: what was observed and which bound it broke."""
        if self.kind == RATE_LIMIT:
            return (f"more than {self.limit} {self.event_type} events within {self.window_s} s, which guard"
                    f" {self.guard_id} allows at most")
        relation = "exceeds the maximum" if self.kind == "max_value" else "is below the minimum"
        return (f"{self.field} = {self.value} on {self.event_type} {relation} {self.limit} of guard"
                f" {self.guard_id}")

    def data(self) -> dict[str, Any]:
        """The canonical-JSON ``data`` of its ``guard.violated`` receipt (strings, no floats)."""
        out: dict[str, Any] = {"guard_id": self.guard_id, "kind": self.kind, "field": self.field,
                               "value": self.value, "limit": self.limit, "event_type": self.event_type,
                               "criticality": self.criticality}
        if self.window_s is not None:
            out["window_s"] = self.window_s
        return out


def as_decimal(value: Any) -> Decimal | None:
    """A JSON number as a Decimal; None for anything that is not a number (booleans included)."""
    if type(value) is int:
        return Decimal(value)
    if type(value) is float:
        return Decimal(repr(value))
    return None


def decimal_text(value: Decimal) -> str:
    return format(value, "f")


def value_violation(guard: GuardSpec, obs: Observation) -> GuardViolation | None:
    """Check one ``max_value`` / ``min_value`` guard against one observation."""
    if guard.field is None:
        return None
    number = as_decimal(obs.value.get(guard.field))
    if number is None:
        return None
    broken = number > guard.limit if guard.kind == "max_value" else number < guard.limit
    if not broken:
        return None
    return GuardViolation(guard.guard_id, guard.kind, obs.event_type, guard.field, decimal_text(number),
                          decimal_text(guard.limit), guard.criticality, obs.id)


class _RateWindow:
    """The latest ``limit + 1`` timestamps of the events a rate-limit guard counts."""

    __slots__ = ("exceeded", "keep", "times", "window_us")

    def __init__(self, limit: int, window_s: int) -> None:
        self.keep = limit + 1
        self.window_us = window_s * 1_000_000
        self.times: deque[int] = deque()
        self.exceeded = False

    def add(self, ts_us: int) -> bool:
        """Count one event; return True when this event starts an excursion over the limit."""
        times = self.times
        if len(times) == self.keep:
            if ts_us < times[0]:
                return False  # older than every kept event: the latest limit+1 do not change
            times.popleft()
        if not times or ts_us >= times[-1]:
            times.append(ts_us)
        else:
            insort(times, ts_us)
        over = len(times) == self.keep and times[-1] - times[0] <= self.window_us
        started = over and not self.exceeded
        self.exceeded = over
        return started


class GuardEvaluator:
    """Evaluates a sector's hot-path guards on observations; holds the rate-limit windows. Thread-safe."""

    def __init__(self) -> None:
        self._rates: dict[tuple[str, str], tuple[GuardSpec, _RateWindow]] = {}
        self._lock = threading.Lock()

    def evaluate(self, observations: Iterable[Observation], schema: SectorSchema | None) -> list[GuardViolation]:
        """All violations of the hot-path guards of ``schema`` by ``observations`` (one sector), in order."""
        if schema is None or not schema.guards:
            return []
        out: list[GuardViolation] = []
        with self._lock:
            for obs in observations:
                for guard in schema.guards_for(obs.event_type):
                    if not guard.hot_path:
                        continue
                    if guard.kind in VALUE_KINDS:
                        found = value_violation(guard, obs)
                    elif guard.kind == RATE_LIMIT:
                        found = self._rate(schema.sector, guard, obs)
                    else:
                        found = None
                    if found is not None:
                        out.append(found)
        return out

    def _rate(self, sector: str, guard: GuardSpec, obs: Observation) -> GuardViolation | None:
        key = (sector, guard.guard_id)
        held = self._rates.get(key)
        if held is None or held[0] != guard:  # new guard, or its limit/window changed with a promotion
            held = (guard, _RateWindow(max(0, int(guard.limit)), guard.window_s))
            self._rates[key] = held
        window = held[1]
        if not window.add(obs.ts_us):
            return None
        return GuardViolation(guard.guard_id, guard.kind, obs.event_type, guard.field,
                              str(window.keep), decimal_text(guard.limit), guard.criticality, obs.id,
                              guard.window_s)
