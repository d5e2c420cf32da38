"""What a ΔΣ does to the guards of a sector (SPEC §6–§7): one pure comparison of the guards before and after.

Guards are matched by their node (IRI) and compared on what they *do*, as the read model
(:mod:`knhk.ontology.extract`) sees them — so a second ``knhk:hotPath false`` triple added next to the old one
counts exactly like replacing it. Each difference is one :class:`GuardChange` naming the guard, the aspect,
the value before and after, and whether it is a **relaxation** (the guard protects less afterwards):

| aspect | relaxation when |
|---|---|
| ``removed`` (the node is gone) | always |
| ``guard_id`` | always (what receipts, doctrines and people call it is gone) |
| ``kind`` (``max_value`` ↔ ``min_value`` ↔ ``rate_limit``) | always |
| ``field`` (``knhk:onField``) | always: the old field is no longer bounded |
| ``event_type`` (what ``knhk:appliesTo`` resolves to; ``*`` = every type) | unless it widens to every type |
| ``limit`` | a ``max_value`` / ``rate_limit`` limit rises, a ``min_value`` limit falls |
| ``window_s`` (rate limits) | the window shrinks |
| ``hot_path`` | it is switched off |
| ``criticality`` (critical > high > medium > low) | it is lowered |
| ``immutable`` | it is cleared |
| ``ticks`` | never (a cost, judged by Q3) |
| ``added`` (a new node) | never |

An **immutable** guard may not change in any aspect, and must still cover what it covered (its event type
still resolves to the same wire type): :attr:`GuardChanges.immutable_broken` lists every violation, which the
pipeline's ``guards`` stage rejects. Relaxations of other guards are never approved without people
(:data:`RELAXATION_RULE`: two distinct approvers besides the author, in addition to the sector's doctrines).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from knhk.ontology.schema import GuardSpec, SectorSchema

#: the pending-approval id under which a relaxation waits for people
RELAXATION_RULE = "GUARD-RELAXATION"
RELAXATION_APPROVERS = 2
CRITICALITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
EVERY_TYPE = "*"


@dataclass(frozen=True)
class GuardChange:
    """One difference of one guard."""

    guard_id: str
    iri: str
    aspect: str
    before: str | None
    after: str | None
    relaxation: bool
    immutable: bool = False  # the guard was immutable before the change

    def describe(self) -> str:
        if self.aspect == "removed":
            return f"{self.guard_id} removed"
        if self.aspect == "added":
            return f"{self.guard_id} added"
        return f"{self.guard_id} {self.aspect} {self.before} → {self.after}"

    def to_json(self) -> dict[str, Any]:
        return {"guard_id": self.guard_id, "iri": self.iri, "aspect": self.aspect, "before": self.before,
                "after": self.after, "relaxation": self.relaxation, "immutable": self.immutable}


@dataclass(frozen=True)
class GuardChanges:
    """Every guard difference a ΔΣ makes, in guard-id order."""

    changes: tuple[GuardChange, ...] = ()

    @property
    def relaxations(self) -> tuple[GuardChange, ...]:
        return tuple(c for c in self.changes if c.relaxation)

    @property
    def immutable_broken(self) -> tuple[GuardChange, ...]:
        """Changes of guards that were immutable (any aspect; losing coverage included)."""
        return tuple(c for c in self.changes if c.immutable)

    def describe(self, changes: tuple[GuardChange, ...] | None = None) -> str:
        return "; ".join(c.describe() for c in (self.changes if changes is None else changes))


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")
    return str(value)


def _limit_relaxes(kind: str, before: Decimal, after: Decimal) -> bool:
    return after < before if kind == "min_value" else after > before


def _compare(old: GuardSpec, new: GuardSpec) -> list[GuardChange]:
    out: list[GuardChange] = []

    def change(aspect: str, before: object, after: object, relaxation: bool) -> None:
        out.append(GuardChange(old.guard_id, old.iri, aspect, _text(before), _text(after), relaxation,
                               old.immutable))

    if new.guard_id != old.guard_id:
        change("guard_id", old.guard_id, new.guard_id, True)
    if new.kind != old.kind:
        change("kind", old.kind, new.kind, True)
    if new.field != old.field:
        change("field", old.field, new.field, True)
    if new.event_type != old.event_type:
        change("event_type", old.event_type or EVERY_TYPE, new.event_type or EVERY_TYPE, new.event_type is not None)
    if new.limit != old.limit:
        relaxes = new.kind != old.kind or _limit_relaxes(old.kind, old.limit, new.limit)
        change("limit", old.limit, new.limit, relaxes)
    if old.kind == "rate_limit" and new.window_s != old.window_s:
        change("window_s", old.window_s, new.window_s, new.window_s < old.window_s)
    if new.hot_path != old.hot_path:
        change("hot_path", old.hot_path, new.hot_path, not new.hot_path)
    if new.criticality != old.criticality:
        change("criticality", old.criticality, new.criticality,
               CRITICALITY_RANK.get(new.criticality, 0) < CRITICALITY_RANK.get(old.criticality, 0))
    if new.immutable != old.immutable:
        change("immutable", old.immutable, new.immutable, not new.immutable)
    if new.ticks != old.ticks:
        change("ticks", old.ticks, new.ticks, False)
    return out


def guard_changes(before: SectorSchema, after: SectorSchema) -> GuardChanges:
    """Every difference between the guards of ``before`` and ``after`` (pure; O(guards))."""
    old = {g.iri: g for g in before.guards}
    new = {g.iri: g for g in after.guards}
    out: list[GuardChange] = []
    for node, g in old.items():
        if node not in new:
            out.append(GuardChange(g.guard_id, node, "removed", g.guard_id, None, True, g.immutable))
        elif new[node] != g:
            out.extend(_compare(g, new[node]))
    for node, g in new.items():
        if node not in old:
            out.append(GuardChange(g.guard_id, node, "added", None, g.guard_id, False))
    out.sort(key=lambda c: (c.guard_id, c.iri))
    return GuardChanges(tuple(out))
