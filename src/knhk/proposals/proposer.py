"""The default, rule-based proposer (SPEC §5): deterministic ΔΣ from a detected pattern.

* ``schema_drift:<type>`` → declare what the observations use: a new event type becomes a class
  (``rdfs:subClassOf knhk:Event``, ``knhk:eventType``) with a closed SHACL node shape; each undeclared field
  becomes a datatype property (``knhk:fieldName``, domain, range) plus a property shape. Datatypes are
  inferred from the observed JSON values: only booleans → ``xsd:boolean``; only integers → ``xsd:integer``;
  numbers → ``xsd:decimal``; strings that all parse as RFC 3339 date-times → ``xsd:dateTime``; other strings
  → ``xsd:string``; mixed kinds → ``xsd:string`` (and the pipeline's Q2 will say whether that is sound). A
  field present in every offending observation is declared required (``sh:minCount 1``).
* ``high_frequency:<type>`` → a ``rate_limit`` guard on the type, 1 tick, with a limit of 1.5 × the observed
  events per window (rounded up), unless the type already has a rate-limit guard.
* Other patterns (alerts) propose nothing.

The proposer never approves anything: its output goes through the same pipeline as anyone else's. New IRIs
are minted in the sector's namespace and never collide with existing subjects; no blank nodes are produced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from knhk.ontology.namespaces import (
    KNHK,
    OWL_CLASS,
    OWL_DATATYPE_PROPERTY,
    RDF,
    RDF_PROPERTY,
    RDF_TYPE,
    RDFS,
    RDFS_CLASS,
    SH,
    XSD,
    iri,
    literal,
    sector_namespace,
)
from knhk.ontology.schema import SectorSchema
from knhk.ops.clock import parse_rfc3339
from knhk.proposals.delta import DeltaSigma, Triple

_T = iri(RDF_TYPE)
# RFC 3339 date-times that are also valid xsd:dateTime lexical forms (upper-case T and Z, no space), so the
# declared datatype accepts the very values it was inferred from
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class ObservedField:
    """What the detector saw of one undeclared field."""

    name: str
    kinds: frozenset[str]  # JSON kinds: string, integer, number, boolean, object, array, null
    samples: tuple[object, ...] = ()
    present_in_all: bool = False


@dataclass(frozen=True)
class DriftFinding:
    event_type: str
    new_type: bool
    fields: tuple[ObservedField, ...] = ()
    observations: int = 0


@dataclass(frozen=True)
class RateFinding:
    event_type: str
    count: int
    window_s: int


@dataclass(frozen=True)
class Plan:
    """A proposed ΔΣ with its rationale."""

    delta: DeltaSigma
    rationale: str
    details: Mapping[str, object] = field(default_factory=dict)


def _is_datetime(text: str) -> bool:
    if not _RFC3339.match(text):
        return False
    try:
        parse_rfc3339(text)
    except ValueError:
        return False
    return True


def infer_datatype(f: ObservedField) -> str:
    kinds = set(f.kinds) - {"null"}
    if kinds == {"boolean"}:
        return XSD + "boolean"
    if kinds == {"integer"}:
        return XSD + "integer"
    if kinds and kinds <= {"integer", "number"}:
        return XSD + "decimal"
    if kinds == {"string"}:
        strings = [s for s in f.samples if isinstance(s, str)]
        if strings and all(_is_datetime(s) for s in strings):
            return XSD + "dateTime"
    return XSD + "string"


def class_local_name(event_type: str) -> str:
    parts = [p for p in re.split(r"[._:\-]+", event_type) if p]
    return "".join(p[:1].upper() + p[1:] for p in parts) or "Event"


def _fresh(base: str, taken: set[str]) -> str:
    candidate, n = base, 2
    while iri(candidate) in taken:
        candidate = f"{base}{n}"
        n += 1
    taken.add(iri(candidate))
    return candidate


def _subjects(triples: Iterable[Triple]) -> set[str]:
    return {s for s, _, _ in triples}


def _shape_of(triples: Iterable[Triple], class_term: str) -> str | None:
    for s, p, o in triples:
        if p == iri(SH + "targetClass") and o == class_term:
            return s
    return None


def propose_drift(sector: str, base: frozenset[Triple], schema: SectorSchema, finding: DriftFinding) -> Plan | None:
    ns = sector_namespace(sector)
    taken = _subjects(base)
    add: list[Triple] = []
    spec = schema.event_types.get(finding.event_type)
    if spec is None:
        cls = iri(_fresh(ns + class_local_name(finding.event_type), taken))
        add += [(cls, _T, iri(RDFS_CLASS)), (cls, _T, iri(OWL_CLASS)),
                (cls, iri(RDFS + "subClassOf"), iri(KNHK + "Event")),
                (cls, iri(RDFS + "label"), literal(finding.event_type)),
                (cls, iri(KNHK + "eventType"), literal(finding.event_type))]
        shape = iri(_fresh(ns + class_local_name(finding.event_type) + "Shape", taken))
        ignored = iri(_fresh(ns + class_local_name(finding.event_type) + "Shape-ignored", taken))
        add += [(shape, _T, iri(SH + "NodeShape")), (shape, iri(SH + "targetClass"), cls),
                (shape, iri(SH + "closed"), literal("true", XSD + "boolean")),
                (shape, iri(SH + "ignoredProperties"), ignored),
                (ignored, iri(RDF + "first"), iri(RDF_TYPE)), (ignored, iri(RDF + "rest"), iri(RDF + "nil"))]
    else:
        cls = iri(spec.class_iri) if not spec.class_iri.startswith("<") else spec.class_iri
        existing = _shape_of(base, cls)
        if existing is None:
            shape = iri(_fresh(ns + class_local_name(finding.event_type) + "Shape", taken))
            add += [(shape, _T, iri(SH + "NodeShape")), (shape, iri(SH + "targetClass"), cls)]
        else:
            shape = existing
    declared: dict[str, list[str]] = {}  # field name literal → property terms carrying it (sorted)
    for s, p, o in base:
        if p == iri(KNHK + "fieldName"):
            declared.setdefault(o, []).append(s)
    for props in declared.values():
        props.sort()
    ranges = {s: o for s, p, o in base if p == iri(RDFS + "range")}
    new_fields: list[str] = []
    for f in sorted(finding.fields, key=lambda x: x.name):
        if spec is not None and f.name in spec.fields:
            continue
        datatype = iri(infer_datatype(f))
        known = declared.get(literal(f.name), [])
        same_range = [p for p in known if ranges.get(p) == datatype]  # deterministic: the smallest IRI wins
        if same_range:
            prop = same_range[0]
            add.append((prop, iri(RDFS + "domain"), cls))
        else:
            local = f.name if not known else f"{class_local_name(finding.event_type)}_{f.name}"
            prop = iri(_fresh(ns + re.sub(r"[^A-Za-z0-9_\-]", "_", local), taken))
            add += [(prop, _T, iri(RDF_PROPERTY)), (prop, _T, iri(OWL_DATATYPE_PROPERTY)),
                    (prop, iri(RDFS + "domain"), cls), (prop, iri(RDFS + "range"), datatype),
                    (prop, iri(KNHK + "fieldName"), literal(f.name))]
        ps = iri(_fresh(f"{shape[1:-1]}-{re.sub(r'[^A-Za-z0-9_-]', '_', f.name)}", taken))
        add += [(shape, iri(SH + "property"), ps), (ps, _T, iri(SH + "PropertyShape")), (ps, iri(SH + "path"), prop),
                (ps, iri(SH + "datatype"), datatype), (ps, iri(SH + "maxCount"), literal("1", XSD + "integer"))]
        if f.present_in_all:
            add.append((ps, iri(SH + "minCount"), literal("1", XSD + "integer")))
        new_fields.append(f"{f.name}: {infer_datatype(f).removeprefix(XSD)}{' (required)' if f.present_in_all else ''}")
    if spec is not None and not new_fields:
        return None
    what = "new event type " + finding.event_type if spec is None else f"new fields of {finding.event_type}"
    rationale = (f"schema drift: {finding.observations} recent observation(s) use {what} not declared in the "
                 f"current snapshot; declare {', '.join(new_fields) or 'the type'}")
    return Plan(DeltaSigma.of(add), rationale, {"event_type": finding.event_type, "fields": new_fields})


def propose_rate_limit(sector: str, base: frozenset[Triple], schema: SectorSchema, finding: RateFinding) -> Plan | None:
    spec = schema.event_types.get(finding.event_type)
    if spec is None:
        return None
    if any(g.kind == "rate_limit" and g.event_type == finding.event_type for g in schema.guards):
        return None
    ns = sector_namespace(sector)
    taken = _subjects(base)
    guard_id = "RATE-" + re.sub(r"[^A-Z0-9]+", "-", finding.event_type.upper())
    guard = iri(_fresh(ns + guard_id, taken))
    cls = spec.class_iri if spec.class_iri.startswith("<") else iri(spec.class_iri)
    limit = max(1, math.ceil(finding.count * 1.5))
    label = literal(f"Rate limit for {finding.event_type}")
    add = [(guard, _T, iri(KNHK + "Guard")), (guard, iri(RDFS + "label"), label),
           (guard, iri(KNHK + "guardId"), literal(guard_id)), (guard, iri(KNHK + "guardKind"), literal("rate_limit")),
           (guard, iri(KNHK + "appliesTo"), cls), (guard, iri(KNHK + "limit"), literal(str(limit), XSD + "decimal")),
           (guard, iri(KNHK + "windowSeconds"), literal(str(finding.window_s), XSD + "integer")),
           (guard, iri(KNHK + "ticks"), literal("1", XSD + "integer")),
           (guard, iri(KNHK + "hotPath"), literal("true", XSD + "boolean")),
           (guard, iri(KNHK + "criticality"), literal("medium"))]
    rationale = (f"rate anomaly: {finding.count} {finding.event_type} events in {finding.window_s} s; add guard "
                 f"{guard_id} limiting the type to {limit} per {finding.window_s} s (1 tick)")
    return Plan(DeltaSigma.of(add), rationale, {"guard_id": guard_id, "limit": limit})


def plans_for(sector: str, base: frozenset[Triple], schema: SectorSchema,
              findings: Sequence[DriftFinding | RateFinding]) -> list[Plan | None]:
    out: list[Plan | None] = []
    for f in findings:
        out.append(propose_drift(sector, base, schema, f) if isinstance(f, DriftFinding)
                   else propose_rate_limit(sector, base, schema, f))
    return out
