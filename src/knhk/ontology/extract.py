"""Extraction of the :class:`~knhk.ontology.schema.SectorSchema` read model from a snapshot's triples.

Reads Σ_sector as the ``knhk:`` vocabulary (core.ttl) and SHACL (W3C SHACL §2.1, §4.2.1) define it:

- an *event type* is a class carrying ``knhk:eventType "<wire event_type>"``;
- its *fields* are the properties whose ``rdfs:domain`` is that class and that carry ``knhk:fieldName``;
  a property may list several domains (KNHK reads ``rdfs:domain`` as "declared for", no RDFS entailment);
  the field's datatype is the property's ``rdfs:range``; it is *required* when a node shape targeting the
  class (``sh:targetClass``) has an ``sh:property`` with that ``sh:path`` and ``sh:minCount`` ≥ 1;
- *guards* are ``knhk:Guard`` instances; ``knhk:appliesTo`` names the event-type class;
- the *guard profile* is every class or property annotated ``knhk:protected true``.

One pass over the triples picks out the dozen predicates that matter, so a 100k-triple Σ extracts in a few
milliseconds with no RDF store.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from knhk.errors import InvalidInputError
from knhk.ontology.core import CRITICALITIES, GUARD_KINDS
from knhk.ontology.namespaces import (
    KNHK,
    OWL_ANNOTATION_PROPERTY,
    OWL_DATATYPE_PROPERTY,
    OWL_OBJECT_PROPERTY,
    RDF_PROPERTY,
    RDF_TYPE,
    RDFS_DOMAIN,
    RDFS_RANGE,
    SH,
)
from knhk.ontology.rdf import Triple, literal_value
from knhk.ontology.schema import XSD_STRING, EventTypeSpec, FieldSpec, GuardSpec, SectorSchema

_TYPE = f"<{RDF_TYPE}>"
_DOMAIN = f"<{RDFS_DOMAIN}>"
_RANGE = f"<{RDFS_RANGE}>"
_EVENT_TYPE = f"<{KNHK}eventType>"
_FIELD_NAME = f"<{KNHK}fieldName>"
_PROTECTED = f"<{KNHK}protected>"
_GUARD = f"<{KNHK}Guard>"
_TARGET_CLASS = f"<{SH}targetClass>"
_PROPERTY = f"<{SH}property>"
_PATH = f"<{SH}path>"
_MIN_COUNT = f"<{SH}minCount>"
_GUARD_PROPS = {f"<{KNHK}{name}>": name for name in (
    "guardId", "guardKind", "appliesTo", "onField", "limit", "windowSeconds", "ticks", "hotPath", "criticality",
    "immutable",
)}
_WANTED = frozenset({_TYPE, _DOMAIN, _RANGE, _EVENT_TYPE, _FIELD_NAME, _PROTECTED, _TARGET_CLASS, _PROPERTY,
                     _PATH, _MIN_COUNT, *_GUARD_PROPS})
_TRUE = frozenset({"true", "1"})
_PROPERTY_TYPES = frozenset(f"<{t}>" for t in (RDF_PROPERTY, OWL_DATATYPE_PROPERTY, OWL_OBJECT_PROPERTY,
                                               OWL_ANNOTATION_PROPERTY))


def _plain(term: str) -> str:
    return term[1:-1] if term.startswith("<") else term


class _Index:
    """The triples of the dozen interesting predicates, grouped by predicate in one pass."""

    def __init__(self, triples: Iterable[Triple]) -> None:
        groups: dict[str, list[Triple]] = {p: [] for p in _WANTED}
        get = groups.get
        for triple in triples:
            bucket = get(triple[1])
            if bucket is not None:
                bucket.append(triple)
        self.groups = groups
        self._single: dict[str, dict[str, str]] = {}
        self._multi: dict[str, dict[str, list[str]]] = {}

    def single(self, predicate: str) -> dict[str, str]:
        """subject → object for a predicate meant to have one value (the smallest wins if there are more)."""
        if predicate not in self._single:
            group = self.groups[predicate]
            values = {t[0]: t[2] for t in group}
            if len(values) != len(group):
                for subject, _, obj in group:
                    values[subject] = min(values[subject], obj)
            self._single[predicate] = values
        return self._single[predicate]

    def multi(self, predicate: str) -> dict[str, list[str]]:
        """subject → objects for a predicate that may have several values."""
        if predicate not in self._multi:
            values: dict[str, list[str]] = {}
            for subject, _, obj in self.groups[predicate]:
                values.setdefault(subject, []).append(obj)
            self._multi[predicate] = values
        return self._multi[predicate]

    def first(self, predicate: str, subject: str) -> str | None:
        return self.single(predicate).get(subject)


def _int(term: str | None, what: str) -> int | None:
    if term is None:
        return None
    text = literal_value(term)
    try:
        return int(text) if text is not None else None
    except ValueError:
        raise InvalidInputError(f"{what} must be an integer literal, not {term}") from None


def _guard(index: _Index, iri: str, event_types_by_class: dict[str, str]) -> GuardSpec:
    values = {name: index.first(pred, iri) for pred, name in _GUARD_PROPS.items()}
    label = f"guard {_plain(iri)}"
    kind = literal_value(values["guardKind"] or "")
    if kind not in GUARD_KINDS:
        raise InvalidInputError(f"{label}: knhk:guardKind must be one of {', '.join(GUARD_KINDS)}, not {kind!r}")
    limit_text = literal_value(values["limit"] or "")
    try:
        limit = Decimal(limit_text) if limit_text is not None else None
    except InvalidOperation:
        limit = None
    if limit is None or not limit.is_finite():
        raise InvalidInputError(f"{label}: knhk:limit must be a decimal literal")
    ticks = _int(values["ticks"], f"{label}: knhk:ticks")
    if ticks is None or ticks < 0:
        raise InvalidInputError(f"{label}: knhk:ticks must be a non-negative integer")
    criticality = literal_value(values["criticality"] or '"medium"')
    if criticality not in CRITICALITIES:
        raise InvalidInputError(f"{label}: knhk:criticality must be one of {', '.join(CRITICALITIES)}")
    window = _int(values["windowSeconds"], f"{label}: knhk:windowSeconds")
    applies = values["appliesTo"]
    event_type = event_types_by_class.get(applies) if applies is not None else None
    if applies is not None and event_type is None:
        raise InvalidInputError(f"{label}: knhk:appliesTo {applies} is not an event-type class")
    hot = values["hotPath"]
    immutable = values["immutable"]
    return GuardSpec(
        guard_id=literal_value(values["guardId"] or "") or _plain(iri).rsplit("#", 1)[-1],
        iri=_plain(iri),
        kind=kind,
        event_type=event_type,
        field=literal_value(values["onField"]) if values["onField"] else None,
        limit=limit,
        ticks=ticks,
        hot_path=True if hot is None else literal_value(hot) in _TRUE,
        window_s=60 if window is None else window,
        criticality=criticality,
        immutable=immutable is not None and literal_value(immutable) in _TRUE,
    )


def extract_schema(sector: str, snapshot_id: str, triples: Iterable[Triple]) -> SectorSchema:
    """The read model of one snapshot: event types with fields, guards, and the guard profile."""
    index = _Index(triples)
    groups = index.groups
    protected = {t[0] for t in groups[_PROTECTED] if literal_value(t[2]) in _TRUE}

    event_types_by_class: dict[str, str] = {}
    for cls, term in index.single(_EVENT_TYPE).items():
        name = literal_value(term)
        if name:
            event_types_by_class[cls] = name

    paths = index.single(_PATH)
    min_counts = index.single(_MIN_COUNT)
    prop_shapes = index.multi(_PROPERTY)
    required: dict[str, set[str]] = {}  # event-type class → required property terms
    for shape, _, cls in groups[_TARGET_CLASS]:
        if cls not in event_types_by_class:
            continue
        needed = required.setdefault(cls, set())
        for prop_shape in prop_shapes.get(shape, ()):
            path = paths.get(prop_shape)
            count = _int(min_counts.get(prop_shape), "sh:minCount")
            if path is not None and count is not None and count >= 1:
                needed.add(path)

    ranges = index.single(_RANGE)
    domains = index.multi(_DOMAIN)
    no_required: set[str] = set()
    fields: dict[str, dict[str, FieldSpec]] = {}
    for prop, term in sorted(index.single(_FIELD_NAME).items()):
        name = literal_value(term)
        if not name:
            continue
        datatype = _plain(ranges.get(prop, f"<{XSD_STRING}>"))
        for cls in domains.get(prop, ()):
            if cls in event_types_by_class:
                declared = fields.setdefault(cls, {})
                if name not in declared:
                    declared[name] = FieldSpec(name, _plain(prop), datatype,
                                               prop in required.get(cls, no_required), prop in protected)

    event_types: dict[str, EventTypeSpec] = {}
    for cls in sorted(event_types_by_class):
        event_type = event_types_by_class[cls]
        if event_type not in event_types:
            event_types[event_type] = EventTypeSpec(event_type, _plain(cls),
                                                    dict(sorted(fields.get(cls, {}).items())), cls in protected)

    guard_iris = sorted({t[0] for t in groups[_TYPE] if t[2] == _GUARD})
    guards = tuple(sorted((_guard(index, g, event_types_by_class) for g in guard_iris), key=lambda g: g.guard_id))
    types = index.multi(_TYPE) if protected else {}
    typed_properties = {s for s in protected if s in domains or s in ranges
                        or not _PROPERTY_TYPES.isdisjoint(types.get(s, ()))}
    return SectorSchema(
        sector=sector,
        snapshot_id=snapshot_id,
        event_types=event_types,
        guards=guards,
        protected_classes=frozenset(_plain(s) for s in protected - typed_properties),
        protected_properties=frozenset(_plain(s) for s in typed_properties),
    )
