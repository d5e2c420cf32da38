"""Incremental views of a candidate snapshot: base snapshot + ΔΣ, without rescanning the whole Σ.

Validating a proposal against a large Σ (SPEC §12: 100k triples, p95 < 50 ms) cannot afford a pass over the
whole graph per proposal: a candidate is a new snapshot, so nothing cached per snapshot id helps. Everything
the pipeline needs depends only on a *neighbourhood* of the change, so this module

- indexes a base snapshot once (:class:`SigmaIndex`: triples by subject, referrers by object, the shapes with
  non-class targets, the memory estimate of Σ_core ⊕ base);
- overlays a ΔΣ on it (:class:`Overlay`: the candidate's triples of any subject, its referrers);
- computes the neighbourhood of a ΔΣ (:func:`neighbourhood`): the subjects the change touches and what they
  refer to, every event-type class among them with *everything* its read model depends on (its properties,
  node shapes and their property shapes and lists, guards applying to it, classes sharing its event-type
  name), the superclass chains and the shapes targeting them;
- derives the candidate's :class:`~knhk.ontology.schema.SectorSchema` from the base's schema and the read
  model of the neighbourhood (:func:`incremental_schema`), equal to
  :func:`knhk.ontology.extract.extract_schema` of the whole candidate (property-tested).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from knhk.ontology.core import core_triples
from knhk.ontology.extract import extract_schema
from knhk.ontology.namespaces import KNHK, RDF, RDF_TYPE, RDFS, SH
from knhk.ontology.rdf import SKOLEM_PREFIX, Triple
from knhk.ontology.schema import SectorSchema

_TYPE = f"<{RDF_TYPE}>"
_SUBCLASS = f"<{RDFS}subClassOf>"
_DOMAIN = f"<{RDFS}domain>"
_EVENT_TYPE = f"<{KNHK}eventType>"
_FIELD_NAME = f"<{KNHK}fieldName>"
_APPLIES_TO = f"<{KNHK}appliesTo>"
_GUARD = f"<{KNHK}Guard>"
_TARGET_CLASS = f"<{SH}targetClass>"
_SPECIAL_TARGETS = frozenset(f"<{SH}{n}>" for n in ("targetSubjectsOf", "targetObjectsOf", "targetNode"))
#: predicates whose object is part of the subject's definition (shape structure, lists)
_FOLLOW = frozenset(f"<{SH}{n}>" for n in (
    "property", "node", "not", "and", "or", "xone", "qualifiedValueShape", "ignoredProperties", "in",
)) | {f"<{RDF}first>", f"<{RDF}rest>"}
#: predicates whose object a touched subject depends on one level deep
_REFERS = frozenset({_DOMAIN, f"<{RDFS}range>", _APPLIES_TO, _TARGET_CLASS, f"<{SH}path>", _SUBCLASS})


def _triple_bytes(t: Triple) -> int:
    return 3 * (len(t[0]) + len(t[1]) + len(t[2])) + 96


class SigmaIndex:
    """A base snapshot's triples indexed for neighbourhood lookups (built once per base snapshot)."""

    def __init__(self, triples: Iterable[Triple]) -> None:
        by_subject: dict[str, list[Triple]] = {}
        referrers: dict[str, list[Triple]] = {}
        special: set[str] = set()
        total = 0
        core = core_triples()
        for t in triples:
            by_subject.setdefault(t[0], []).append(t)
            referrers.setdefault(t[2], []).append(t)
            if t[1] in _SPECIAL_TARGETS:
                special.add(t[0])
            if t not in core:
                total += _triple_bytes(t)
        total += sum(_triple_bytes(t) for t in core)
        self.by_subject = by_subject
        self.referrers = referrers
        self.special_target_shapes = frozenset(special)
        self.memory_bytes = total  # of Σ_core ⊕ Σ_base, as knhk.validation.shadow.memory_estimate_mb counts


@dataclass
class Overlay:
    """The candidate = base − removals + additions, seen through the base's index."""

    index: SigmaIndex
    additions: tuple[Triple, ...]
    removals: frozenset[Triple]
    _adds_by_subject: dict[str, list[Triple]] = field(default_factory=dict)
    _adds_by_object: dict[str, list[Triple]] = field(default_factory=dict)

    @classmethod
    def of(cls, index: SigmaIndex, additions: Iterable[Triple], removals: Iterable[Triple]) -> Overlay:
        removed = frozenset(removals)
        added = tuple(t for t in additions if t not in removed)
        out = cls(index, added, removed)
        for t in added:
            out._adds_by_subject.setdefault(t[0], []).append(t)
            out._adds_by_object.setdefault(t[2], []).append(t)
        return out

    def candidate(self, subject: str) -> list[Triple]:
        """The candidate's triples of ``subject``."""
        base = self.index.by_subject.get(subject, ())
        own = [t for t in base if t not in self.removals] if self.removals else list(base)
        extra = self._adds_by_subject.get(subject)
        if extra:
            seen = set(own)
            own += [t for t in extra if t not in seen]
        return own

    def base(self, subject: str) -> list[Triple]:
        return list(self.index.by_subject.get(subject, ()))

    def has_subject(self, subject: str) -> bool:
        return bool(self.candidate(subject))

    def referrers(self, obj: str) -> list[Triple]:
        """Triples of base or candidate whose object is ``obj`` (removed ones included: both sides matter)."""
        return [*self.index.referrers.get(obj, ()), *self._adds_by_object.get(obj, ())]

    def memory_bytes(self) -> int:
        """The candidate's memory estimate (Σ_core ⊕ Σ_new), from the base's and the change."""
        core = core_triples()
        total = self.index.memory_bytes
        for t in self.removals:
            if t not in core and t in self.index.by_subject.get(t[0], ()):
                total -= _triple_bytes(t)
        for t in self.additions:
            if t not in core and t not in self.index.by_subject.get(t[0], ()):
                total += _triple_bytes(t)
        return total


def _is_event_class(overlay: Overlay, subject: str) -> bool:
    return any(p == _EVENT_TYPE for _, p, _ in (*overlay.base(subject), *overlay.candidate(subject)))


def neighbourhood(overlay: Overlay) -> set[str]:
    """Every subject whose triples the pipeline and the incremental read model need for this change."""
    touched = {t[0] for t in (*overlay.additions, *overlay.removals)}
    out: set[str] = set()
    queue: list[str] = []

    def add(subject: str) -> None:
        if subject not in out and (subject in overlay.index.by_subject or subject in overlay._adds_by_subject):
            out.add(subject)
            queue.append(subject)

    for shape in sorted(overlay.index.special_target_shapes):  # shapes that may target any node
        add(shape)
    for t in (*overlay.additions, *overlay.removals):
        add(t[0])
        add(t[2])
        for s, _, _ in overlay.referrers(t[0]):  # whoever points at a changed subject
            add(s)
    expanded: set[str] = set()
    chains: set[str] = set()
    while queue:
        subject = queue.pop()
        triples = (*overlay.base(subject), *overlay.candidate(subject))
        for s, p, o in triples:
            if p in _FOLLOW or o.startswith(f"<{SKOLEM_PREFIX}"):
                add(o)
            if subject in touched and p in _REFERS:
                add(o)
            if p in (_TARGET_CLASS, _APPLIES_TO):
                add(o)
            if p == _SUBCLASS and s not in chains:
                chains.add(s)
                add(o)
            if p in (_EVENT_TYPE, _FIELD_NAME) and subject in touched:
                for r in overlay.referrers(o):  # others declaring the same event type or field name
                    if r[1] == p:
                        add(r[0])
        if subject not in expanded and _is_event_class(overlay, subject):
            expanded.add(subject)  # everything the read model of an event type depends on
            for s, p, _ in overlay.referrers(subject):
                if p in (_DOMAIN, _TARGET_CLASS, _APPLIES_TO):
                    add(s)
            for _, p, o in triples:
                if p == _EVENT_TYPE:
                    for r in overlay.referrers(o):
                        if r[1] == _EVENT_TYPE:
                            add(r[0])
        if subject in chains or subject in expanded:
            for s, p, _ in overlay.referrers(subject):
                if p == _TARGET_CLASS:  # shapes targeting a class on a superclass chain
                    add(s)
    return out


def subgraph(overlay: Overlay, subjects: Iterable[str], *, candidate: bool = True) -> frozenset[Triple]:
    out: set[Triple] = set()
    for s in subjects:
        out.update(overlay.candidate(s) if candidate else overlay.base(s))
    return frozenset(out)


def incremental_schema(base_schema: SectorSchema, overlay: Overlay, snapshot_id: str,
                       near: set[str] | None = None) -> SectorSchema:
    """The candidate's read model: the base's, with every event type, guard and guard-profile entry of the
    change's neighbourhood re-extracted from the candidate's triples."""
    near = neighbourhood(overlay) if near is None else near
    local = extract_schema(base_schema.sector, snapshot_id, subgraph(overlay, near))
    plain = {s[1:-1] for s in near}
    event_types = {spec.class_iri: spec for spec in base_schema.event_types.values() if spec.class_iri not in plain}
    by_class = dict(event_types)
    by_class.update({spec.class_iri: spec for spec in local.event_types.values()})
    merged: dict[str, object] = {}
    for cls in sorted(by_class, key=lambda c: f"<{c}>"):
        spec = by_class[cls]
        if spec.event_type not in merged:
            merged[spec.event_type] = spec
    guards = [g for g in base_schema.guards if g.iri not in plain] + list(local.guards)
    guards.sort(key=lambda g: (g.guard_id, f"<{g.iri}>"))
    return SectorSchema(
        sector=base_schema.sector,
        snapshot_id=snapshot_id,
        event_types=merged,  # type: ignore[arg-type]
        guards=tuple(guards),
        protected_classes=frozenset((base_schema.protected_classes - plain) | local.protected_classes),
        protected_properties=frozenset((base_schema.protected_properties - plain) | local.protected_properties),
    )
