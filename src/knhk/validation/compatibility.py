"""Compatibility analysis of a ΔΣ (SPEC §6 ``guards`` and ``compatibility`` stages).

*Removed* items lose their ``rdf:type`` declaration; *narrowed* items keep it but lose or change a triple
that defines what they accept (domain, range, superclass, a shape's datatype) or gain a new SHACL constraint
on their path (minCount, maxCount, datatype, pattern, in, min/max bounds, closed). Both are breaking changes:
a major version bump. Additions only are a minor bump. A *dangling reference* is an IRI used as a class,
datatype or path (rdfs:domain/range/subClassOf, sh:targetClass/class/path/datatype/node, knhk:appliesTo) that
neither Σ_new, Σ_core nor a standard vocabulary declares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from knhk.ontology.core import core_triples
from knhk.ontology.namespaces import KNHK, OWL, RDF, RDF_TYPE, RDFS, SH, XSD, iri
from knhk.proposals.delta import DeltaSigma, Triple

_TYPE = iri(RDF_TYPE)
_DEFINING_TERMS = {iri(RDFS + "domain"), iri(RDFS + "range"), iri(RDFS + "subClassOf")}
_CONSTRAINTS = {iri(SH + x) for x in ("minCount", "maxCount", "datatype", "pattern", "in", "minInclusive",
                                      "maxInclusive", "minExclusive", "maxExclusive", "closed", "minLength",
                                      "maxLength", "hasValue", "class", "node")}
_REFERENCES = {iri(RDFS + "domain"), iri(RDFS + "range"), iri(RDFS + "subClassOf"), iri(SH + "targetClass"),
               iri(SH + "class"), iri(SH + "path"), iri(SH + "node"), iri(SH + "datatype"), iri(KNHK + "appliesTo")}
_STANDARD = (RDF, RDFS, OWL, XSD, SH)
_PROTECTED = iri(KNHK + "protected")


def _paths_of_shapes(triples: Iterable[Triple]) -> dict[str, str]:
    """property shape → the property IRI it constrains (sh:path)."""
    return {s: o for s, p, o in triples if p == iri(SH + "path")}


def removed_or_narrowed(delta: DeltaSigma, base: frozenset[Triple]) -> set[str]:
    """IRIs (N-Triples form) of the classes and properties that ``delta`` removes or narrows."""
    out: set[str] = set()
    for s, p, _o in delta.removals:
        if p == _TYPE or p in _DEFINING_TERMS:
            out.add(s)
    base_subjects = {s for s, _, _ in base}
    paths = _paths_of_shapes([*base, *delta.additions])
    for s, p, _o in delta.additions:
        if p in _CONSTRAINTS and s in paths and paths[s] in base_subjects:
            out.add(paths[s])
    return out


def loosened(delta: DeltaSigma, base: frozenset[Triple]) -> set[str]:
    """IRIs (N-Triples form) of the classes and properties whose SHACL constraints or guard-profile annotation
    ``delta`` removes: a removed triple of a property shape (or its ``sh:property`` link) loosens the shape's
    path and target class; a removed ``sh:targetClass`` or node-level constraint loosens the target class; a
    removed ``knhk:protected`` annotation takes its subject out of the guard profile. Harmless for ordinary
    items, but a protected class or property must *keep* its constraints (SPEC §6 ``protected``)."""
    out: set[str] = set()
    paths = _paths_of_shapes(base)
    targets: dict[str, set[str]] = {}
    owners: dict[str, set[str]] = {}
    for s, p, o in base:
        if p == iri(SH + "targetClass"):
            targets.setdefault(s, set()).add(o)
        elif p == iri(SH + "property"):
            owners.setdefault(o, set()).add(s)
    for s, p, o in delta.removals:
        if p == _PROTECTED:
            out.add(s)
        if p == iri(SH + "targetClass"):
            out.add(o)
        if p == iri(SH + "property"):
            if o in paths:
                out.add(paths[o])
            out |= targets.get(s, set())
        if s in paths:
            out.add(paths[s])
            for shape in owners.get(s, ()):
                out |= targets.get(shape, set())
        if s in targets and p in _CONSTRAINTS:
            out |= targets[s]
    return out


def version_bump(delta: DeltaSigma, narrowed: set[str]) -> str:
    """``major`` for a removal or narrowing (a breaking change, SPEC §6), ``minor`` for additions only."""
    if narrowed or delta.removals:
        return "major"
    if delta.additions:
        return "minor"
    return "patch"


def dangling_references(triples: Iterable[Triple], is_declared: Callable[[str], bool] | None = None) -> list[str]:
    """Referenced IRIs that nothing declares. ``triples`` is the graph (or the part of it to check);
    ``is_declared`` answers for the whole graph when only a part is given (default: a subject of ``triples``)."""
    graph = set(triples)
    core = {s for s, _, _ in core_triples()}
    declared = {s for s, _, _ in graph}
    out: set[str] = set()
    for _s, p, o in graph:
        if p in _REFERENCES and o.startswith("<"):
            value = o[1:-1]
            if value.startswith(_STANDARD) or o in declared or o in core:
                continue
            if is_declared is not None and is_declared(o):
                continue
            out.add(o)
    return sorted(out)
