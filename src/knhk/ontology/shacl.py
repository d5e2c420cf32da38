"""SHACL validation of mapped observations against a snapshot's shapes (W3C SHACL), and the static
meta-check of Σ itself.

- :func:`validate` validates only the given focus nodes of a data graph (SPEC §6 Q2: "validate only the
  focus nodes the change touches"), with ``inference='none'``. The shapes are the SHACL part of Σ_sector plus
  the Σ_core shapes, cut out of the snapshot and cached per content. When they stay within the SHACL Core
  subset of :mod:`knhk.ontology.shapes` (true of every bundled pack) the compiled engine answers; otherwise
  pySHACL does. Both report the same violations (tested). The data graph also carries Σ's
  ``rdfs:subClassOf`` triples, so ``sh:targetClass`` reaches instances of subclasses as SHACL §2.1.3.3
  defines.
- :func:`validate_observations` maps observations (:mod:`knhk.ontology.mapping`) and validates them.
- :func:`check_sigma_wellformed` is the static stage's meta-check: IRIs are absolute, every class has a
  superclass, every property a domain and a range, event types and guards are declared properly.

rdflib and pySHACL are imported where a graph is first built or pySHACL answers, not with this module: opening
an installation (which imports it with the validation pipeline) and the meta-check do not need them.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from knhk.errors import InvalidInputError
from knhk.ontology.core import CRITICALITIES, GUARD_KINDS, core_triples
from knhk.ontology.mapping import observation_node, observation_triples
from knhk.ontology.namespaces import (
    KNHK,
    OWL_CLASS,
    OWL_DATATYPE_PROPERTY,
    OWL_OBJECT_PROPERTY,
    RDF_PROPERTY,
    RDF_TYPE,
    RDFS_CLASS,
    RDFS_DOMAIN,
    RDFS_RANGE,
    RDFS_SUBCLASS_OF,
    SH,
)
from knhk.ontology.rdf import SKOLEM_PREFIX, Triple, literal_value, to_ntriples
from knhk.ontology.schema import SectorSchema
from knhk.ontology.shapes import CompiledShapes, compile_shapes

if TYPE_CHECKING:
    import rdflib

Observation = tuple[str, str, dict[str, Any]]  # (id, event_type, value)

_TYPE = f"<{RDF_TYPE}>"
_SUBCLASS = f"<{RDFS_SUBCLASS_OF}>"
_SH_PREFIX = f"<{SH}"
_SHAPE_TYPES = frozenset({f"<{SH}NodeShape>", f"<{SH}PropertyShape>"})
_SHAPE_VALUED = frozenset(f"<{SH}{name}>" for name in (
    "property", "node", "not", "and", "or", "xone", "qualifiedValueShape", "ignoredProperties", "in",
))


@dataclass(frozen=True)
class Violation:
    """One SHACL validation result (severity Violation) for one focus node."""

    focus_node: str  # plain IRI
    path: str | None  # plain IRI of sh:resultPath, when there is one
    message: str
    constraint: str  # the constraint component, e.g. sh:DatatypeConstraintComponent (plain IRI)
    value: str | None = None  # the offending value node, N-Triples

    def to_json(self) -> dict[str, str | None]:
        return {"focus_node": self.focus_node, "path": self.path, "message": self.message,
                "constraint": self.constraint, "value": self.value}


@dataclass(frozen=True)
class ShaclReport:
    """The outcome of validating a set of focus nodes."""

    conforms: bool
    focus_nodes: tuple[str, ...]
    violations: tuple[Violation, ...] = ()
    by_focus: dict[str, tuple[Violation, ...]] = field(default_factory=dict)
    engine: str = "pyshacl"  # which engine answered: "compiled" (knhk.ontology.shapes) or "pyshacl"

    @property
    def violating_nodes(self) -> frozenset[str]:
        return frozenset(self.by_focus)

    @property
    def violation_rate(self) -> float:
        """Share of focus nodes with at least one violation (Q2's measure)."""
        return len(self.by_focus) / len(self.focus_nodes) if self.focus_nodes else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "conforms": self.conforms,
            "focus_count": len(self.focus_nodes),
            "violating_count": len(self.by_focus),
            "violations": [v.to_json() for v in self.violations],
            "engine": self.engine,
        }


# -- shapes graph ---------------------------------------------------------------------------------------
def shapes_subgraph(triples: Iterable[Triple]) -> set[Triple]:
    """The SHACL part of Σ: every shape (anything typed sh:NodeShape / sh:PropertyShape or stating a sh:
    predicate) with the triples of the nodes it reaches (property shapes, RDF lists, nested shapes)."""
    by_subject: dict[str, list[Triple]] = {}
    roots: set[str] = set()
    for t in triples:
        by_subject.setdefault(t[0], []).append(t)
        if t[1].startswith(_SH_PREFIX) or (t[1] == _TYPE and t[2] in _SHAPE_TYPES):
            roots.add(t[0])
    out: set[Triple] = set()
    seen: set[str] = set()
    queue = list(roots)
    while queue:
        subject = queue.pop()
        if subject in seen:
            continue
        seen.add(subject)
        for t in by_subject.get(subject, ()):
            out.add(t)
            obj = t[2]
            if obj in by_subject and obj not in seen and (obj.startswith(f"<{SKOLEM_PREFIX}") or obj in roots
                                                        or t[1] in _SHAPE_VALUED):
                queue.append(obj)
    return out


@dataclass(frozen=True)
class _Shapes:
    graph: rdflib.Graph
    subclass: list[Triple]
    compiled: CompiledShapes | None


class _ShapesCache:
    """Shapes per Σ content (LRU; a frozenset caches its own hash): the rdflib graph for pySHACL, the
    class hierarchy, and the compiled fast path when the shapes allow it."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[frozenset[Triple], _Shapes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, schema_triples: frozenset[Triple] | set[Triple]) -> _Shapes:
        content = schema_triples if isinstance(schema_triples, frozenset) else frozenset(schema_triples)
        key = hash(content)
        with self._lock:
            item = self._items.get(key)
            if item is not None and (item[0] is content or item[0] == content):
                self._items.move_to_end(key)
                return item[1]
        import rdflib

        shapes = shapes_subgraph(content) | shapes_subgraph(core_triples())
        subclass = sorted(t for t in content if t[1] == _SUBCLASS)
        graph = rdflib.Graph()
        graph.parse(data=to_ntriples(shapes), format="nt")
        built = _Shapes(graph, subclass, compile_shapes(shapes, content))
        with self._lock:
            self._items[key] = (content, built)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return built


_SHAPES = _ShapesCache()


def _term_text(node: Any) -> str | None:
    import rdflib

    if node is None:
        return None
    if isinstance(node, rdflib.URIRef):
        return str(node)
    return str(node.n3())


def _violations(results: rdflib.Graph) -> list[Violation]:
    import rdflib

    sh = rdflib.Namespace(SH)
    out: list[Violation] = []
    for result in results.subjects(rdflib.RDF.type, sh.ValidationResult):
        severity = results.value(result, sh.resultSeverity)
        if severity is not None and severity != sh.Violation:
            continue
        focus = results.value(result, sh.focusNode)
        path = results.value(result, sh.resultPath)
        messages = sorted(str(m) for m in results.objects(result, sh.resultMessage))
        component = results.value(result, sh.sourceConstraintComponent)
        value = results.value(result, sh.value)
        out.append(Violation(
            focus_node=str(focus),
            path=str(path) if isinstance(path, rdflib.URIRef) else None,
            message=messages[0] if messages else "constraint violated",
            constraint=str(component) if component is not None else "",
            value=_term_text(value),
        ))
    return out


def _report(focus: tuple[str, ...], violations: list[Violation], engine: str) -> ShaclReport:
    violations.sort(key=lambda v: (v.focus_node, v.path or "", v.constraint, v.value or "", v.message))
    by_focus: dict[str, list[Violation]] = {}
    for violation in violations:
        by_focus.setdefault(violation.focus_node, []).append(violation)
    return ShaclReport(not violations, focus, tuple(violations), {k: tuple(v) for k, v in by_focus.items()},
                       engine)


def validate(schema_triples: frozenset[Triple] | set[Triple], data_triples: Iterable[Triple],
             focus_nodes: Sequence[str], *, engine: str = "auto") -> ShaclReport:
    """Validate ``focus_nodes`` (N-Triples IRI terms or plain IRIs) of the data graph against Σ's shapes.

    ``engine``: ``auto`` uses the compiled fast path when Σ's shapes stay within its subset, else pySHACL;
    ``pyshacl`` always uses pySHACL.
    """
    if engine not in ("auto", "pyshacl"):
        raise InvalidInputError(f"SHACL engine {engine!r} must be 'auto' or 'pyshacl'")
    focus_plain = tuple(dict.fromkeys(f[1:-1] if f.startswith("<") else f for f in focus_nodes))
    if not focus_plain:
        return ShaclReport(True, ())
    shapes = _SHAPES.get(schema_triples)
    if shapes.compiled is not None and engine == "auto":
        nodes: dict[str, dict[str, list[str]]] = {}
        for s, p, o in data_triples:
            nodes.setdefault(s, {}).setdefault(p, []).append(o)
        findings = shapes.compiled.validate(nodes, [f"<{f}>" for f in focus_plain])
        return _report(focus_plain, [
            Violation(f.focus[1:-1], None if f.path is None else f.path[1:-1], f.message, f.constraint[1:-1],
                      f.value) for f in findings
        ], "compiled")
    import rdflib
    from pyshacl import validate as pyshacl_validate

    data = rdflib.Graph()
    data.parse(data=to_ntriples(list(data_triples)) + to_ntriples(shapes.subclass), format="nt")
    _, results, _ = pyshacl_validate(
        data, shacl_graph=shapes.graph, inference="none", focus_nodes=[rdflib.URIRef(f) for f in focus_plain],
        allow_warnings=True, allow_infos=True,
    )
    return _report(focus_plain, _violations(results), "pyshacl")


def validate_observations(schema_triples: frozenset[Triple] | set[Triple], observations: Sequence[Observation],
                          schema: SectorSchema, *, engine: str = "auto") -> ShaclReport:
    """Map observations to RDF under ``schema`` and validate exactly those nodes against Σ's shapes."""
    data: list[Triple] = []
    focus: list[str] = []
    for obs_id, event_type, value in observations:
        data.extend(observation_triples(obs_id, event_type, value, schema))
        focus.append(observation_node(obs_id))
    return validate(schema_triples, data, focus, engine=engine)


# -- the static meta-check ------------------------------------------------------------------------------
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")
_CLASS_TYPES = frozenset({f"<{RDFS_CLASS}>", f"<{OWL_CLASS}>"})
_PROPERTY_TYPES = frozenset({f"<{RDF_PROPERTY}>", f"<{OWL_DATATYPE_PROPERTY}>", f"<{OWL_OBJECT_PROPERTY}>"})
_EVENT = f"<{KNHK}Event>"
_K = {name: f"<{KNHK}{name}>" for name in (
    "eventType", "fieldName", "Guard", "guardId", "guardKind", "appliesTo", "onField", "limit", "windowSeconds",
    "ticks", "criticality",
)}


def _term_problem(term: str) -> str | None:
    if term.startswith("<"):
        if not term.endswith(">") or not _IRI.match(term[1:-1]):
            return f"{term} is not a valid absolute IRI"
        return None
    if term.startswith("_:"):
        return f"blank node {term} was not skolemised"
    if term.startswith('"'):
        return None
    return f"{term!r} is not an N-Triples term"


def check_sigma_wellformed(triples: Iterable[Triple], *, context: Iterable[Triple] = ()) -> list[str]:
    """Human-readable problems of the classes, properties, event types and guards declared in ``triples``;
    facts may come from ``triples`` or ``context`` (the rest of Σ). An empty list means well-formed."""
    own = list(triples)
    facts: dict[str, dict[str, list[str]]] = {}
    for s, p, o in (*own, *context):
        facts.setdefault(s, {}).setdefault(p, []).append(o)
    problems: set[str] = set()
    for triple in own:
        for term in triple:
            problem = _term_problem(term)
            if problem:
                problems.add(problem)
        if not triple[1].startswith("<"):
            problems.add(f"predicate {triple[1]} must be an IRI")

    def values(subject: str, predicate: str) -> list[str]:
        return facts.get(subject, {}).get(predicate, [])

    declared = {s for s, p, o in own if p == _TYPE}
    for subject in sorted(declared):
        types = set(values(subject, _TYPE))
        if types & _CLASS_TYPES and not values(subject, _SUBCLASS):
            problems.add(f"class {subject} has no rdfs:subClassOf")
        if types & _PROPERTY_TYPES or values(subject, _K["fieldName"]):
            if not values(subject, f"<{RDFS_DOMAIN}>"):
                problems.add(f"property {subject} has no rdfs:domain")
            if not values(subject, f"<{RDFS_RANGE}>"):
                problems.add(f"property {subject} has no rdfs:range")
        if _K["Guard"] in types:
            problems.update(_guard_problems(subject, values, facts))
    problems.update(_event_type_problems(own, values, facts))
    return sorted(problems)


def _reaches_event(cls: str, values: Any) -> bool:
    seen: set[str] = set()
    queue = [cls]
    while queue:
        current = queue.pop()
        if current == _EVENT:
            return True
        if current in seen:
            continue
        seen.add(current)
        queue.extend(values(current, _SUBCLASS))
    return False


def _event_type_problems(own: list[Triple], values: Any, facts: dict[str, dict[str, list[str]]]) -> set[str]:
    problems: set[str] = set()
    declaring: dict[str, set[str]] = {}
    for cls in sorted({s for s, p, _ in own if p == _K["eventType"]}):
        for term in values(cls, _K["eventType"]):
            declaring.setdefault(literal_value(term) or term, set()).add(cls)
        if not _reaches_event(cls, values):
            problems.add(f"event-type class {cls} is not a subclass of knhk:Event")
    for subject, attrs in facts.items():
        for term in attrs.get(_K["eventType"], []):
            name = literal_value(term) or term
            if name in declaring:
                declaring[name].add(subject)
    for name, classes in declaring.items():
        if len(classes) > 1:
            problems.add(f"event type {name!r} is declared by several classes: {', '.join(sorted(classes))}")
    touched = {s for s, p, _ in own if p in (_K["fieldName"], f"<{RDFS_DOMAIN}>")}
    seen: dict[tuple[str, str], str] = {}
    for prop, attrs in sorted(facts.items()):
        for name_term in attrs.get(_K["fieldName"], []):
            for cls in attrs.get(f"<{RDFS_DOMAIN}>", []):
                key = (cls, literal_value(name_term) or name_term)
                if key in seen and (prop in touched or seen[key] in touched):
                    problems.add(f"field {key[1]!r} of {cls} is declared by both {seen[key]} and {prop}")
                seen.setdefault(key, prop)
    return problems


def _guard_problems(guard: str, values: Any, facts: dict[str, dict[str, list[str]]]) -> list[str]:
    problems: list[str] = []

    def one(name: str) -> str | None:
        found = values(guard, _K[name])
        return literal_value(found[0]) if found else None

    kind = one("guardKind")
    if kind not in GUARD_KINDS:
        problems.append(f"guard {guard}: knhk:guardKind must be one of {', '.join(GUARD_KINDS)}")
    if not one("guardId"):
        problems.append(f"guard {guard} has no knhk:guardId")
    try:
        limit = Decimal(one("limit") or "")
        if not limit.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        problems.append(f"guard {guard}: knhk:limit must be a decimal number")
    ticks = one("ticks")
    if ticks is None or not ticks.isdigit():
        problems.append(f"guard {guard}: knhk:ticks must be a non-negative integer")
    criticality = one("criticality")
    if criticality is not None and criticality not in CRITICALITIES:
        problems.append(f"guard {guard}: knhk:criticality must be one of {', '.join(CRITICALITIES)}")
    targets = values(guard, _K["appliesTo"])
    if not targets or not any(values(t, _K["eventType"]) for t in targets):
        problems.append(f"guard {guard}: knhk:appliesTo must name an event-type class")
    if kind in ("max_value", "min_value") and not one("onField"):
        problems.append(f"guard {guard}: a {kind} guard needs knhk:onField")
    if kind == "rate_limit":
        window = one("windowSeconds")
        if window is None or not window.isdigit() or int(window) == 0:
            problems.append(f"guard {guard}: a rate_limit guard needs a positive knhk:windowSeconds")
    return problems
