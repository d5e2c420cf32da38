"""What a snapshot declares, in plain Python: event types, their fields and datatypes, and guards.

This is the read model the hot and warm paths use (ingest conformance, guards, detectors, shadow replay),
extracted once per snapshot from Σ by :mod:`knhk.ontology.extract` so nobody queries RDF per observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

XSD = "http://www.w3.org/2001/XMLSchema#"
XSD_STRING = XSD + "string"
XSD_INTEGER = XSD + "integer"
XSD_DECIMAL = XSD + "decimal"
XSD_BOOLEAN = XSD + "boolean"
XSD_DATETIME = XSD + "dateTime"


@dataclass(frozen=True)
class FieldSpec:
    """One declared field of an event type (``knhk:fieldName`` on a property)."""

    name: str
    property_iri: str
    datatype: str  # an XSD datatype IRI
    required: bool = False  # a SHACL sh:minCount ≥ 1 on the event type's node shape
    protected: bool = False


@dataclass(frozen=True)
class EventTypeSpec:
    """One declared event type (a class with ``knhk:eventType``)."""

    event_type: str
    class_iri: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    protected: bool = False


@dataclass(frozen=True)
class GuardSpec:
    """A guard declared in Σ (``knhk:Guard``).

    ``kind`` is ``max_value`` / ``min_value`` (a bound on ``field`` of ``event_type``'s observations) or
    ``rate_limit`` (at most ``limit`` events of ``event_type`` per ``window_s`` seconds). ``ticks`` is its
    abstract hot-path cost (Q3: the hot-path guards of one event type sum to ≤ 8).
    """

    guard_id: str
    iri: str
    kind: str
    event_type: str | None
    field: str | None
    limit: Decimal
    ticks: int
    hot_path: bool = True
    window_s: int = 60
    criticality: str = "medium"  # critical | high | medium | low
    immutable: bool = False


@dataclass(frozen=True)
class SectorSchema:
    """Everything one snapshot of one sector declares, ready for fast lookups."""

    sector: str
    snapshot_id: str
    event_types: dict[str, EventTypeSpec] = field(default_factory=dict)
    guards: tuple[GuardSpec, ...] = ()
    protected_classes: frozenset[str] = frozenset()
    protected_properties: frozenset[str] = frozenset()

    @cached_property
    def _guards_by_type(self) -> dict[str | None, tuple[GuardSpec, ...]]:
        index: dict[str | None, list[GuardSpec]] = {}
        for g in self.guards:
            index.setdefault(g.event_type, []).append(g)
        return {k: tuple(v) for k, v in index.items()}

    def guards_for(self, event_type: str) -> list[GuardSpec]:
        """The guards of an event type (and those applying to every type), from a per-type index."""
        index = self._guards_by_type
        return [*index.get(event_type, ()), *index.get(None, ())]

    def hot_path_ticks(self, event_type: str) -> int:
        return sum(g.ticks for g in self.guards_for(event_type) if g.hot_path)
