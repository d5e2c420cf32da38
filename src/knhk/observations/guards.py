"""Hot-path guards evaluated on ingest (SPEC §2): value bounds and rate limits declared in Σ, and the
sector's resource-limit doctrines.

Value bounds fail closed (:mod:`knhk.observations.limits`): a ``resource_limit`` doctrine holds for every
observation of its sector carrying the resource, whatever its event type; a Σ ``max_value`` / ``min_value``
guard for its event type (every type when it names none). The value is read as a number from any JSON form
(integer, float, exponent, numeric string) and compared as a :class:`~decimal.Decimal`: the bound itself
passes, anything beyond it violates, and a value that cannot be read as a number (a non-numeric string, a
boolean, ``null``, an array, an object) violates too. An absent field is not bounded. One guard id is
reported at most once per observation.

Rate-limit guards (``rate_limit``) count events of the guard's event type (all types of the sector when the
guard names none) by timestamp, as a sliding log: an event whose window ``[ts − window_s, ts]`` (inclusive)
holds more than ``limit`` events exceeds the guard. Late (out-of-order) arrivals are counted in place. A
violation is reported once per excursion — by the event that starts it — and the guard re-arms after an
event whose window is back within the limit. Timestamps are kept for the window plus 120 s (the largest
accepted lateness) and at most max(10 × (limit + 1), 1000) of them: beyond that rate the guard is already
in an excursion. Each event costs O(log n); counting is per process.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from knhk.observations.limits import DoctrineLike, LimitPlan, ValueLimit, plan_limits, read_number
from knhk.observations.model import Observation
from knhk.ontology.schema import GuardSpec, SectorSchema

RATE_LIMIT = "rate_limit"
PLAN_CACHE = 32  # schemas whose limit plans are kept (the current ones of each sector, candidates in validation)
LATE_ARRIVAL_US = 120_000_000  # an accepted timestamp is at most 60 s off the server clock, either way
RATE_CAP_FACTOR = 10
RATE_CAP_MIN = 1000
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
    unreadable: bool = False  # the value could not be read as a number where a limit applies

    @property
    def level(self) -> str:
        return alert_level(self.criticality)

    @property
    def reason(self) -> str:
        """A sentence for people: what was observed and which bound it broke."""
        if self.kind == RATE_LIMIT:
            return (f"more than {self.limit} {self.event_type} events within {self.window_s} s, which guard"
                    f" {self.guard_id} allows at most")
        bound = "maximum" if self.kind == "max_value" else "minimum"
        if self.unreadable:
            return (f"{self.field} = {self.value} on {self.event_type} cannot be read as a number, so it breaks"
                    f" the {bound} {self.limit} of guard {self.guard_id} (guards fail closed)")
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
        if self.unreadable:
            out["unreadable"] = True
        return out


def as_decimal(value: Any) -> Decimal | None:
    """A value as a Decimal in any JSON form (see :func:`knhk.observations.limits.read_number`)."""
    return read_number(value)


def decimal_text(value: Decimal) -> str:
    return format(value, "f")


def _shown(value: Any) -> str:
    """An unreadable value as compact JSON text (at most 200 characters), for the receipt."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


def value_violation(limit: ValueLimit, obs: Observation) -> GuardViolation | None:
    """Check one value limit against one observation carrying its field (fail closed)."""
    raw = obs.value[limit.field]
    number = read_number(raw)
    if number is not None and not limit.broken_by(number):
        return None
    return GuardViolation(limit.guard_id, limit.kind, obs.event_type, limit.field,
                          _shown(raw) if number is None else decimal_text(number), decimal_text(limit.limit),
                          limit.criticality, obs.id, unreadable=number is None)


class _RateWindow:
    """The sorted timestamps of the events a rate-limit guard counts, kept for the window plus the skew."""

    __slots__ = ("cap", "exceeded", "limit", "max_ts", "start", "times", "window_us")

    def __init__(self, limit: int, window_s: int) -> None:
        self.limit = limit
        self.window_us = window_s * 1_000_000
        self.cap = max(RATE_CAP_FACTOR * (limit + 1), RATE_CAP_MIN)
        self.times: list[int] = []
        self.start = 0  # times[start:] are live; the prefix is dropped lazily
        self.max_ts: int | None = None
        self.exceeded = False

    def add(self, ts_us: int) -> int | None:
        """Count one event; return its window's event count when it starts an excursion over the limit."""
        times = self.times
        if not times or ts_us >= times[-1]:
            times.append(ts_us)
            index = len(times) - 1
        else:
            index = bisect_right(times, ts_us, self.start)
            times.insert(index, ts_us)
        count = index + 1 - bisect_left(times, ts_us - self.window_us, self.start, index + 1)
        over = count > self.limit
        started = over and not self.exceeded
        self.exceeded = over
        self.max_ts = ts_us if self.max_ts is None else max(self.max_ts, ts_us)
        self._trim(self.max_ts)
        return count if started else None

    def _trim(self, max_ts: int) -> None:
        floor = max_ts - self.window_us - LATE_ARRIVAL_US
        self.start = max(bisect_left(self.times, floor, self.start), len(self.times) - self.cap)
        if self.start > len(self.times) // 2:
            del self.times[:self.start]
            self.start = 0


class GuardEvaluator:
    """Evaluates a sector's hot-path guards on observations; holds the rate-limit windows. Thread-safe."""

    def __init__(self) -> None:
        self._rates: dict[tuple[str, str], tuple[GuardSpec, _RateWindow]] = {}
        self._plans: dict[tuple[int, tuple[Any, ...]], tuple[SectorSchema, LimitPlan, tuple[GuardSpec, ...]]] = {}
        self._lock = threading.Lock()

    def _plan(self, schema: SectorSchema, doctrines: Sequence[DoctrineLike]) -> tuple[LimitPlan, tuple[GuardSpec, ...]]:
        """The value limits and rate guards of a schema and doctrines, built once per (schema object, limits)."""
        key = (id(schema), tuple((d.id, d.sector, d.type, d.level, tuple(sorted((k, str(v)) for k, v in
                                                                              d.params.items())),
                                  d.effective_from, d.expires) for d in doctrines if d.type == "resource_limit"))
        hit = self._plans.get(key)
        if hit is not None and hit[0] is schema:
            return hit[1], hit[2]
        plan = plan_limits(schema, doctrines)
        rates = tuple(g for g in schema.guards if g.kind == RATE_LIMIT and g.hot_path)
        if len(self._plans) >= PLAN_CACHE:
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = (schema, plan, rates)
        return plan, rates

    def evaluate(self, observations: Iterable[Observation], schema: SectorSchema | None,
                 doctrines: Sequence[DoctrineLike] = (), relaxed: frozenset[str] = frozenset()) -> list[GuardViolation]:
        """All violations of the value limits (``doctrines`` and Σ) and rate limits of ``schema`` by
        ``observations`` (one sector), in order. ``relaxed``: guard ids switched off for this sector now by a
        granted guard relaxation (:mod:`knhk.governance.relaxations`); they are not evaluated."""
        if schema is None:
            return []
        out: list[GuardViolation] = []
        with self._lock:
            plan, rates = self._plan(schema, doctrines)
            if plan.empty and not rates:
                return []
            for obs in observations:
                value = obs.value
                seen: set[str] = set()
                for limit in plan.for_type(obs.event_type):
                    if limit.field in value and limit.guard_id not in seen and limit.in_effect(obs.ts_us) \
                            and limit.guard_id not in relaxed:
                        found = value_violation(limit, obs)
                        if found is not None:
                            seen.add(limit.guard_id)
                            out.append(found)
                if rates:
                    for guard in schema.guards_for(obs.event_type):
                        if guard.kind == RATE_LIMIT and guard.hot_path and guard.guard_id not in relaxed:
                            rate = self._rate(schema.sector, guard, obs)
                            if rate is not None:
                                out.append(rate)
        return out

    def _rate(self, sector: str, guard: GuardSpec, obs: Observation) -> GuardViolation | None:
        key = (sector, guard.guard_id)
        held = self._rates.get(key)
        if held is None or held[0] != guard:  # new guard, or its limit/window changed with a promotion
            held = (guard, _RateWindow(max(0, int(guard.limit)), guard.window_s))
            self._rates[key] = held
        window = held[1]
        count = window.add(obs.ts_us)
        if count is None:
            return None
        return GuardViolation(guard.guard_id, guard.kind, obs.event_type, guard.field, str(count),
                              decimal_text(guard.limit), guard.criticality, obs.id, guard.window_s)
