"""A compiled fast path for the SHACL Core subset KNHK's shapes use (W3C SHACL §4), for mapped observations.

pySHACL is the reference engine but costs about a millisecond per focus node. The shapes sector packs and
the rule proposer write use a small part of SHACL Core, so :func:`compile_shapes` turns those into plain
Python checks over a node's predicate → values map:

- targets ``sh:targetClass`` (with ``rdfs:subClassOf`` closure from Σ) and ``sh:targetSubjectsOf``;
- ``sh:closed`` / ``sh:ignoredProperties``; ``sh:deactivated``; ``sh:severity`` (only Violations are reported);
- property shapes whose ``sh:path`` is a predicate IRI, with ``sh:datatype``, ``sh:minCount``,
  ``sh:maxCount``, ``sh:hasValue``, ``sh:in``, ``sh:min/maxInclusive``, ``sh:min/maxExclusive``,
  ``sh:minLength``, ``sh:maxLength``, ``sh:pattern`` (+ ``sh:flags``), ``sh:message``, ``sh:name``.

Anything else (``sh:node``, ``sh:or``, ``sh:sparql``, complex paths, …) makes ``compile_shapes`` return
``None`` and validation falls back to pySHACL, so the answer never depends on which engine ran. The test
suite checks both engines agree on every bundled pack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from knhk.ontology.namespaces import RDF, RDF_TYPE, RDFS_SUBCLASS_OF, SH, XSD
from knhk.ontology.rdf import SKOLEM_PREFIX, Triple, literal_parts
from knhk.ops.clock import parse_rfc3339

_TYPE = f"<{RDF_TYPE}>"
_SUBCLASS = f"<{RDFS_SUBCLASS_OF}>"
_FIRST, _REST, _NIL = f"<{RDF}first>", f"<{RDF}rest>", f"<{RDF}nil>"
_VIOLATION = f"<{SH}Violation>"

_NODE_KEYS = frozenset(f"<{SH}{n}>" for n in (
    "targetClass", "targetSubjectsOf", "closed", "ignoredProperties", "property", "deactivated", "severity",
    "message", "name", "description",
)) | {_TYPE, f"<{RDF}type>"}
_PROPERTY_KEYS = frozenset(f"<{SH}{n}>" for n in (
    "path", "datatype", "minCount", "maxCount", "hasValue", "in", "minInclusive", "maxInclusive", "minExclusive",
    "maxExclusive", "minLength", "maxLength", "pattern", "flags", "deactivated", "severity", "message", "name",
    "description", "order", "group",
)) | {_TYPE}
_IGNORED_ANNOTATIONS = frozenset({"<http://www.w3.org/2000/01/rdf-schema#label>",
                                  "<http://www.w3.org/2000/01/rdf-schema#comment>"})
_NUMERIC = {XSD + n for n in ("decimal", "integer", "double", "float", "long", "int", "short", "byte",
                              "nonNegativeInteger", "positiveInteger", "negativeInteger", "nonPositiveInteger")}
_LEXICAL = {
    XSD + "integer": re.compile(r"^[+-]?\d+$"),
    XSD + "decimal": re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$"),
    XSD + "boolean": re.compile(r"^(true|false|1|0)$"),
    XSD + "double": re.compile(r"^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?INF|NaN)$"),
    XSD + "float": re.compile(r"^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?INF|NaN)$"),
}
_SH = {name: f"<{SH}{name}>" for name in (
    "DatatypeConstraintComponent", "MinCountConstraintComponent", "MaxCountConstraintComponent",
    "HasValueConstraintComponent", "InConstraintComponent", "MinInclusiveConstraintComponent",
    "MaxInclusiveConstraintComponent", "MinExclusiveConstraintComponent", "MaxExclusiveConstraintComponent",
    "MinLengthConstraintComponent", "MaxLengthConstraintComponent", "PatternConstraintComponent",
    "ClosedConstraintComponent",
)}


@dataclass(frozen=True)
class Finding:
    """One violation found by the compiled engine (terms in N-Triples form)."""

    focus: str
    path: str | None
    constraint: str
    value: str | None
    message: str


@dataclass
class _PropertyShape:
    path: str
    message: str | None = None
    datatype: str | None = None
    min_count: int | None = None
    max_count: int | None = None
    has_value: str | None = None
    allowed: frozenset[str] | None = None
    bounds: list[tuple[str, Decimal]] = field(default_factory=list)  # (component, bound)
    min_length: int | None = None
    max_length: int | None = None
    pattern: re.Pattern[str] | None = None


@dataclass
class _NodeShape:
    iri: str
    target_classes: set[str] = field(default_factory=set)
    target_subjects_of: set[str] = field(default_factory=set)
    closed: bool = False
    allowed: set[str] = field(default_factory=set)
    properties: list[_PropertyShape] = field(default_factory=list)


class _Unsupported(Exception):
    pass


def _number(term: str) -> Decimal | None:
    parts = literal_parts(term)
    if parts is None or parts[1] not in _NUMERIC:
        return None
    try:
        value = Decimal(parts[0])
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _int(term: str) -> int:
    value = _number(term)
    if value is None or value != value.to_integral_value():
        raise _Unsupported(f"{term} is not an integer")
    return int(value)


def _datatype_of(term: str) -> str | None:
    parts = literal_parts(term)
    return None if parts is None else parts[1]


def _well_formed(term: str, datatype: str) -> bool:
    parts = literal_parts(term)
    if parts is None or parts[1] != datatype:
        return False
    pattern = _LEXICAL.get(datatype)
    if pattern is not None:
        return bool(pattern.match(parts[0]))
    if datatype == XSD + "dateTime":
        try:
            parse_rfc3339(parts[0])
        except ValueError:
            return False
    return True


class CompiledShapes:
    """Shapes ready to check mapped observations; build with :func:`compile_shapes`."""

    def __init__(self, shapes: list[_NodeShape], supers: dict[str, set[str]]) -> None:
        self._shapes = shapes
        self._supers = supers
        self._by_class: dict[str, list[_NodeShape]] = {}
        self._by_predicate: dict[str, list[_NodeShape]] = {}
        for shape in shapes:
            for cls in shape.target_classes:
                self._by_class.setdefault(cls, []).append(shape)
            for predicate in shape.target_subjects_of:
                self._by_predicate.setdefault(predicate, []).append(shape)

    def _targeting(self, values: dict[str, list[str]]) -> list[_NodeShape]:
        found: dict[str, _NodeShape] = {}
        for cls in values.get(_TYPE, ()):
            for ancestor in self._supers.get(cls, {cls}):
                for shape in self._by_class.get(ancestor, ()):
                    found[shape.iri] = shape
        for predicate in values:
            for shape in self._by_predicate.get(predicate, ()):
                found[shape.iri] = shape
        return list(found.values())

    def validate(self, nodes: dict[str, dict[str, list[str]]], focus: Iterable[str]) -> list[Finding]:
        """Violations of the focus nodes (N-Triples IRI terms) in ``nodes`` (node → predicate → values)."""
        findings: list[Finding] = []
        for node in focus:
            values = nodes.get(node, {})
            for shape in self._targeting(values):
                findings.extend(self._check(node, values, shape))
        return findings

    def _check(self, node: str, values: dict[str, list[str]], shape: _NodeShape) -> list[Finding]:
        out: list[Finding] = []
        for prop in shape.properties:
            out.extend(_check_property(node, values.get(prop.path, []), prop))
        if shape.closed:
            for predicate, objects in values.items():
                if predicate not in shape.allowed:
                    out.extend(Finding(node, predicate, _SH["ClosedConstraintComponent"], o,
                                       f"Node {node} is closed: it cannot have {predicate} {o}") for o in objects)
        return out


def _check_property(node: str, objects: list[str], prop: _PropertyShape) -> list[Finding]:
    out: list[Finding] = []

    def add(component: str, value: str | None, text: str) -> None:
        out.append(Finding(node, prop.path, _SH[component], value, prop.message or text))

    if prop.min_count is not None and len(objects) < prop.min_count:
        add("MinCountConstraintComponent", None, f"Less than {prop.min_count} values on {node}->{prop.path}")
    if prop.max_count is not None and len(objects) > prop.max_count:
        add("MaxCountConstraintComponent", None, f"More than {prop.max_count} values on {node}->{prop.path}")
    if prop.has_value is not None and prop.has_value not in objects:
        add("HasValueConstraintComponent", None, f"{node}->{prop.path} does not have the value {prop.has_value}")
    for obj in objects:
        if prop.datatype is not None and not _well_formed(obj, prop.datatype):
            add("DatatypeConstraintComponent", obj, f"Value is not a well-formed literal of datatype {prop.datatype}")
        if prop.allowed is not None and obj not in prop.allowed:
            add("InConstraintComponent", obj, f"Value {obj} is not one of the allowed values")
        if prop.bounds:
            number = _number(obj)
            for component, bound in prop.bounds:
                ok = number is not None and {
                    "MinInclusiveConstraintComponent": lambda n, b: n >= b,
                    "MaxInclusiveConstraintComponent": lambda n, b: n <= b,
                    "MinExclusiveConstraintComponent": lambda n, b: n > b,
                    "MaxExclusiveConstraintComponent": lambda n, b: n < b,
                }[component](number, bound)
                if not ok:
                    add(component, obj, f"Value {obj} is out of the range allowed by {component}")
        if prop.min_length is not None or prop.max_length is not None or prop.pattern is not None:
            parts = literal_parts(obj)
            text = parts[0] if parts is not None else (obj[1:-1] if obj.startswith("<") else None)
            if prop.min_length is not None and (text is None or len(text) < prop.min_length):
                add("MinLengthConstraintComponent", obj, f"Value {obj} is shorter than {prop.min_length}")
            if prop.max_length is not None and (text is None or len(text) > prop.max_length):
                add("MaxLengthConstraintComponent", obj, f"Value {obj} is longer than {prop.max_length}")
            if prop.pattern is not None and (text is None or not prop.pattern.search(text)):
                add("PatternConstraintComponent", obj, f"Value {obj} does not match {prop.pattern.pattern}")
    return out


def _list_items(head: str, facts: dict[str, dict[str, list[str]]]) -> list[str]:
    items: list[str] = []
    seen: set[str] = set()
    while head != _NIL:
        if head in seen or head not in facts:
            raise _Unsupported("malformed RDF list")
        seen.add(head)
        cell = facts[head]
        if len(cell.get(_FIRST, [])) != 1 or len(cell.get(_REST, [])) != 1:
            raise _Unsupported("malformed RDF list")
        items.append(cell[_FIRST][0])
        head = cell[_REST][0]
    return items


def _one(attrs: dict[str, list[str]], name: str) -> str | None:
    found = attrs.get(f"<{SH}{name}>", [])
    if len(found) > 1:
        raise _Unsupported(f"several sh:{name}")
    return found[0] if found else None


def _inactive(attrs: dict[str, list[str]]) -> bool:
    severity = _one(attrs, "severity")
    deactivated = _one(attrs, "deactivated")
    return (severity is not None and severity != _VIOLATION) or (
        deactivated is not None and (literal_parts(deactivated) or ("",))[0] in ("true", "1"))


def _property_shape(term: str, facts: dict[str, dict[str, list[str]]]) -> _PropertyShape | None:
    attrs = facts.get(term, {})
    unknown = set(attrs) - _PROPERTY_KEYS - _IGNORED_ANNOTATIONS
    if unknown:
        raise _Unsupported(f"property shape uses {sorted(unknown)}")
    path = _one(attrs, "path")
    if path is None or not path.startswith("<") or path.startswith(f"<{SKOLEM_PREFIX}"):
        raise _Unsupported("only predicate paths are compiled")
    if _inactive(attrs):
        return None
    prop = _PropertyShape(path)
    message = _one(attrs, "message")
    prop.message = (literal_parts(message) or ("",))[0] if message else None
    datatype = _one(attrs, "datatype")
    prop.datatype = datatype[1:-1] if datatype else None
    min_count, max_count = _one(attrs, "minCount"), _one(attrs, "maxCount")
    prop.min_count = _int(min_count) if min_count else None
    prop.max_count = _int(max_count) if max_count else None
    prop.has_value = _one(attrs, "hasValue")
    allowed = _one(attrs, "in")
    prop.allowed = frozenset(_list_items(allowed, facts)) if allowed else None
    for name in ("minInclusive", "maxInclusive", "minExclusive", "maxExclusive"):
        bound = _one(attrs, name)
        if bound is not None:
            number = _number(bound)
            if number is None:
                raise _Unsupported(f"non-numeric sh:{name}")
            prop.bounds.append((f"{name[0].upper()}{name[1:]}ConstraintComponent", number))
    min_length, max_length = _one(attrs, "minLength"), _one(attrs, "maxLength")
    prop.min_length = _int(min_length) if min_length else None
    prop.max_length = _int(max_length) if max_length else None
    pattern = _one(attrs, "pattern")
    if pattern is not None:
        flags_term = _one(attrs, "flags")
        flags = (literal_parts(flags_term) or ("",))[0] if flags_term else ""
        if set(flags) - {"i", "m", "s", "x"}:
            raise _Unsupported("unsupported regex flags")
        bits = 0
        for flag, bit in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL), ("x", re.VERBOSE)):
            if flag in flags:
                bits |= bit
        try:
            prop.pattern = re.compile((literal_parts(pattern) or ("",))[0], bits)
        except re.error as exc:
            raise _Unsupported(f"sh:pattern: {exc}") from None
    return prop


def compile_shapes(shape_triples: Iterable[Triple], schema_triples: Iterable[Triple]) -> CompiledShapes | None:
    """Compile the shapes (``shape_triples``: the SHACL part of Σ plus Σ_core's shapes) with the class
    hierarchy of ``schema_triples``; ``None`` when a shape uses SHACL beyond the compiled subset."""
    facts: dict[str, dict[str, list[str]]] = {}
    for s, p, o in shape_triples:
        facts.setdefault(s, {}).setdefault(p, []).append(o)
    parents: dict[str, set[str]] = {}
    for s, p, o in schema_triples:
        if p == _SUBCLASS:
            parents.setdefault(s, set()).add(o)
    supers: dict[str, set[str]] = {}
    for cls in parents:
        seen: set[str] = set()
        queue = [cls]
        while queue:
            current = queue.pop()
            if current not in seen:
                seen.add(current)
                queue.extend(parents.get(current, ()))
        supers[cls] = seen
    shapes: list[_NodeShape] = []
    property_shapes: set[str] = {o for attrs in facts.values() for o in attrs.get(f"<{SH}property>", [])}
    try:
        for subject, attrs in facts.items():
            is_node = bool(attrs.get(f"<{SH}targetClass>") or attrs.get(f"<{SH}targetSubjectsOf>"))
            if not is_node:
                if f"<{SH}NodeShape>" in attrs.get(_TYPE, []) and subject not in property_shapes:
                    continue  # a node shape without targets validates nothing
                if set(attrs) & {f"<{SH}targetNode>", f"<{SH}targetObjectsOf>", f"<{SH}target>"}:
                    raise _Unsupported("unsupported target")
                continue
            unknown = set(attrs) - _NODE_KEYS - _IGNORED_ANNOTATIONS
            if unknown:
                raise _Unsupported(f"node shape uses {sorted(unknown)}")
            if _inactive(attrs):
                continue
            shape = _NodeShape(subject, set(attrs.get(f"<{SH}targetClass>", [])),
                               set(attrs.get(f"<{SH}targetSubjectsOf>", [])))
            closed = _one(attrs, "closed")
            shape.closed = closed is not None and (literal_parts(closed) or ("",))[0] in ("true", "1")
            for term in attrs.get(f"<{SH}property>", []):
                prop = _property_shape(term, facts)
                if prop is not None:
                    shape.properties.append(prop)
            for term in attrs.get(f"<{SH}property>", []):
                shape.allowed.update(facts.get(term, {}).get(f"<{SH}path>", []))
            ignored = _one(attrs, "ignoredProperties")
            if ignored is not None:
                shape.allowed.update(_list_items(ignored, facts))
            shapes.append(shape)
    except _Unsupported:
        return None
    return CompiledShapes(shapes, supers)
