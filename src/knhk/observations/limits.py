"""Fail-closed value limits on ingest (SPEC §2): which bounds hold for an observation, and how a value is read.

A sector's value bounds come from two places:

- its ``resource_limit`` doctrines in effect: **sector-wide**, they hold for every observation of the sector whose
  value carries the resource, whatever its event type (a doctrine is an organisational rule, not a property of
  one event type);
- the hot-path ``max_value`` / ``min_value`` guards declared in Σ: for their event type, or for every type of
  the sector when they name none.

A doctrine and a Σ guard with the same id and the same bound are one limit (the pack's FIN-LIMIT-001 is both).

The bounded field's value is read as a number from any JSON form: an integer, a float (through its shortest
repr, so ``1000000.1`` is exactly that), or a string holding a decimal number (optional sign, optional
exponent, surrounding whitespace allowed: ``"1000001"``, ``" 1.000001e6 "``). Anything else — a string that is
not such a number (``"1,000,001"``, ``"NaN"``, ``"Infinity"``), a boolean, ``null``, an array or an object — is
*unreadable*, and where a limit applies an unreadable value is itself a violation: a check that cannot decide
refuses. A value field that is absent is not bounded (SPEC §6: an absent resource passes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from knhk.ontology.schema import SectorSchema


class DoctrineLike(Protocol):
    """What ingest reads of a sector doctrine (:class:`knhk.validation.doctrines.Doctrine` is one; the
    validation layer sits above observations, so it is named by shape, not imported)."""

    @property
    def id(self) -> str: ...
    @property
    def sector(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def effective_from(self) -> date | None: ...
    @property
    def expires(self) -> date | None: ...

VALUE_KINDS = ("max_value", "min_value")
MAX_NUMBER_CHARS = 100
#: criticality of a doctrine limit that no Σ guard of the same id describes, by doctrine level
LEVEL_CRITICALITY = {"mandatory": "critical", "warning": "medium", "advisory": "low"}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def read_number(value: Any) -> Decimal | None:
    """The number a JSON value holds, in any JSON form; ``None`` when it holds none (unreadable)."""
    kind = type(value)
    if kind is int:
        return Decimal(value)
    if kind is float:
        return Decimal(repr(value)) if math.isfinite(value) else None
    if kind is str:
        text = value.strip()
        if len(text) > MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
            return None
        try:
            number = Decimal(text)
        except (InvalidOperation, ValueError):
            return None
        return number if number.is_finite() else None
    return None


@dataclass(frozen=True, slots=True)
class ValueLimit:
    """One bound on one field: ``max_value`` (value > limit violates) or ``min_value`` (value < limit)."""

    guard_id: str
    kind: str
    field: str
    limit: Decimal
    criticality: str
    event_type: str | None  # None: every event type of the sector
    source: str  # "doctrine" or "guard"
    effective_from: date | None = None
    expires: date | None = None

    def in_effect(self, ts_us: int) -> bool:
        if self.effective_from is None and self.expires is None:
            return True
        day = datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC).date()
        if self.effective_from is not None and day < self.effective_from:
            return False
        return not (self.expires is not None and day >= self.expires)

    def broken_by(self, number: Decimal) -> bool:
        return number > self.limit if self.kind == "max_value" else number < self.limit


@dataclass(frozen=True)
class LimitPlan:
    """The value limits of one sector snapshot and its doctrines, indexed by event type."""

    sector_wide: tuple[ValueLimit, ...] = ()
    by_type: Mapping[str, tuple[ValueLimit, ...]] = dc_field(default_factory=dict)

    def for_type(self, event_type: str) -> tuple[ValueLimit, ...]:
        """Doctrine limits first, then the guards of every type, then the type's own guards."""
        own = self.by_type.get(event_type)
        return self.sector_wide if own is None else (*self.sector_wide, *own)

    @property
    def empty(self) -> bool:
        return not self.sector_wide and not self.by_type


def doctrine_limits(doctrines: Sequence[DoctrineLike], sector: str,
                    criticality_of: dict[str, str] | None = None) -> list[ValueLimit]:
    """The sector-wide limits of the sector's ``resource_limit`` doctrines (each with its validity dates)."""
    out: list[ValueLimit] = []
    for d in doctrines:
        if d.sector != sector or d.type != "resource_limit":
            continue
        limit = read_number(d.params.get("max"))
        if limit is None:  # Doctrine.check_params refuses this; never silently drop a rule
            raise ValueError(f"doctrine {d.id}: max {d.params.get('max')!r} is not a number")
        criticality = (criticality_of or {}).get(d.id) or LEVEL_CRITICALITY.get(d.level, "medium")
        out.append(ValueLimit(d.id, "max_value", str(d.params["resource"]), limit, criticality, None, "doctrine",
                              d.effective_from, d.expires))
    return out


def plan_limits(schema: SectorSchema | None, doctrines: Sequence[DoctrineLike] = ()) -> LimitPlan:
    """Every value limit of a sector: its doctrines' (sector-wide) and its Σ's hot-path value guards."""
    if schema is None:
        return LimitPlan()
    guards = [g for g in schema.guards if g.kind in VALUE_KINDS and g.field is not None and g.hot_path]
    criticality_of = {g.guard_id: g.criticality for g in schema.guards}
    from_doctrines = doctrine_limits(doctrines, schema.sector, criticality_of)
    same = {(d.guard_id, d.kind, d.field, d.limit) for d in from_doctrines}
    sector_wide = list(from_doctrines)
    per_type: dict[str, list[ValueLimit]] = {}
    for g in guards:
        assert g.field is not None
        if (g.guard_id, g.kind, g.field, g.limit) in same:
            continue  # the doctrine's own hot-path guard: the doctrine already holds sector-wide
        limit = ValueLimit(g.guard_id, g.kind, g.field, g.limit, g.criticality, g.event_type, "guard")
        if g.event_type is None:
            sector_wide.append(limit)
        else:
            per_type.setdefault(g.event_type, []).append(limit)
    return LimitPlan(tuple(sector_wide), {k: tuple(v) for k, v in per_type.items()})
