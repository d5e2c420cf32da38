"""A synthetic but realistic sector ontology of a chosen size, for the validation and cycle benchmarks.

Σ grows the way a real sector's does: many event types (a class under ``knhk:Event`` with ``knhk:eventType``),
each with a handful of typed fields (datatype properties with ``knhk:fieldName``, some shared between types),
a closed SHACL node shape with a property shape per field (``sh:datatype``, ``sh:maxCount``, ``sh:minCount`` on
the required ones, an ``sh:in`` list or a ``sh:pattern`` on some), a hot-path guard on a numeric field of every
fourth type; plus domain data: entity classes and their instances (accounts with owners, limits and flags).
Everything is skolemised IRIs, as Σ is after ingest. Deterministic for a seed.
"""

from __future__ import annotations

import random
from pathlib import Path

from knhk.config import Settings
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
from knhk.ontology.rdf import Triple

_T = iri(RDF_TYPE)
DATATYPES = ("string", "decimal", "integer", "boolean", "dateTime")


def synthetic_sigma(sector: str, target_triples: int = 100_000, seed: int = 7) -> tuple[set[Triple], list[str]]:
    """(Σ_sector triples, wire event types declared) with about ``target_triples`` triples."""
    rng = random.Random(seed)
    ns = sector_namespace(sector)
    out: set[Triple] = set()

    def term(local: str) -> str:
        return iri(ns + local)

    def add(s: str, p: str, o: str) -> None:
        out.add((s, p, o))

    add(iri(ns.rstrip("#")), _T, iri("http://www.w3.org/2002/07/owl#Ontology"))
    add(iri(ns.rstrip("#")), iri(RDFS + "label"), literal(f"synthetic {sector} sector"))
    # shared fields used by many event types
    shared = [(f"shared_{i}", DATATYPES[i % len(DATATYPES)]) for i in range(40)]
    shared_domains: dict[str, list[str]] = {name: [] for name, _ in shared}
    event_types: list[str] = []
    n = 0
    # domain data: entity classes, their properties and instances (~20 % of the graph)
    entities = [term(f"Entity{i}") for i in range(20)]
    for e in entities:
        add(e, _T, iri(RDFS_CLASS))
        add(e, _T, iri(OWL_CLASS))
        add(e, iri(RDFS + "subClassOf"), iri(KNHK + "Entity"))
        add(e, iri(RDFS + "label"), literal(e[len(ns) + 1:-1]))
    for prop, dt in (("owner", "string"), ("credit_limit", "decimal"), ("active", "boolean")):
        p = term(f"entity_{prop}")
        add(p, _T, iri(RDF_PROPERTY))
        add(p, _T, iri(OWL_DATATYPE_PROPERTY))
        for e in entities:
            add(p, iri(RDFS + "domain"), e)
        add(p, iri(RDFS + "range"), iri(XSD + dt))
    i = 0
    while len(out) < target_triples * 0.2:
        node = term(f"instance-{i}")
        add(node, _T, entities[i % len(entities)])
        add(node, iri(RDFS + "label"), literal(f"instance {i}"))
        add(node, term("entity_owner"), literal(f"owner-{rng.randint(1, 5000)}"))
        add(node, term("entity_credit_limit"), literal(str(rng.randint(100, 100_000)), XSD + "decimal"))
        add(node, term("entity_active"), literal("true" if rng.random() < 0.9 else "false", XSD + "boolean"))
        i += 1
    # event types with fields, shapes and guards
    while len(out) < target_triples:
        et = f"ev{n}.{rng.choice(['created', 'updated', 'closed', 'failed', 'observed'])}"
        cls = term(f"Ev{n}")
        event_types.append(et)
        add(cls, _T, iri(RDFS_CLASS))
        add(cls, _T, iri(OWL_CLASS))
        add(cls, iri(RDFS + "subClassOf"), iri(KNHK + "Event"))
        add(cls, iri(RDFS + "label"), literal(f"Event type {et}"))
        add(cls, iri(KNHK + "eventType"), literal(et))
        shape = term(f"Ev{n}Shape")
        ignored = term(f"Ev{n}Shape-ignored")
        add(shape, _T, iri(SH + "NodeShape"))
        add(shape, iri(SH + "targetClass"), cls)
        add(shape, iri(SH + "closed"), literal("true", XSD + "boolean"))
        add(shape, iri(SH + "ignoredProperties"), ignored)
        add(ignored, iri(RDF + "first"), _T)
        add(ignored, iri(RDF + "rest"), iri(RDF + "nil"))
        fields: list[tuple[str, str, str]] = []  # (name, property term, datatype)
        for k in range(rng.randint(4, 8)):
            if rng.random() < 0.3:
                name, dt = rng.choice(shared)
                prop = term(name)
                if cls in shared_domains[name] or any(f[0] == name for f in fields):
                    continue
                shared_domains[name].append(cls)
            else:
                name, dt = f"f{n}_{k}", rng.choice(DATATYPES)
                prop = term(name)
                add(prop, _T, iri(RDF_PROPERTY))
                add(prop, _T, iri(OWL_DATATYPE_PROPERTY))
                add(prop, iri(RDFS + "domain"), cls)
                add(prop, iri(RDFS + "range"), iri(XSD + dt))
                add(prop, iri(KNHK + "fieldName"), literal(name))
            fields.append((name, prop, dt))
            ps = term(f"Ev{n}Shape-{name}")
            add(shape, iri(SH + "property"), ps)
            add(ps, _T, iri(SH + "PropertyShape"))
            add(ps, iri(SH + "path"), prop)
            add(ps, iri(SH + "datatype"), iri(XSD + dt))
            add(ps, iri(SH + "maxCount"), literal("1", XSD + "integer"))
            if k < 2:
                add(ps, iri(SH + "minCount"), literal("1", XSD + "integer"))
            if dt == "string" and rng.random() < 0.2:
                add(ps, iri(SH + "pattern"), literal("^[A-Za-z0-9_.:-]+$"))
        numeric = [f for f in fields if f[2] in ("decimal", "integer")]
        if numeric and n % 4 == 0:
            g = term(f"GUARD-{n}")
            add(g, _T, iri(KNHK + "Guard"))
            add(g, iri(RDFS + "label"), literal(f"bound on {numeric[0][0]} of {et}"))
            add(g, iri(KNHK + "guardId"), literal(f"GUARD-{n}"))
            add(g, iri(KNHK + "guardKind"), literal("max_value"))
            add(g, iri(KNHK + "appliesTo"), cls)
            add(g, iri(KNHK + "onField"), literal(numeric[0][0]))
            add(g, iri(KNHK + "limit"), literal(str(rng.randint(1000, 1_000_000)), XSD + "decimal"))
            add(g, iri(KNHK + "ticks"), literal(str(rng.randint(1, 3)), XSD + "integer"))
            add(g, iri(KNHK + "hotPath"), literal("true", XSD + "boolean"))
            add(g, iri(KNHK + "criticality"), literal(rng.choice(["low", "medium", "high"])))
        n += 1
    for name, dt in shared:
        prop = term(name)
        add(prop, _T, iri(RDF_PROPERTY))
        add(prop, _T, iri(OWL_DATATYPE_PROPERTY))
        for cls in shared_domains[name] or [iri(KNHK + "Event")]:
            add(prop, iri(RDFS + "domain"), cls)
        add(prop, iri(RDFS + "range"), iri(XSD + dt))
        add(prop, iri(KNHK + "fieldName"), literal(name))
    return out, event_types


def field_value(rng: random.Random, datatype: str) -> object:
    if datatype == "string":
        return f"v{rng.randint(1, 10_000)}"
    if datatype == "decimal":
        return round(rng.uniform(1, 900), 2)
    if datatype == "integer":
        return rng.randint(1, 900)
    if datatype == "boolean":
        return rng.random() < 0.5
    return f"2026-11-23T10:{rng.randint(10, 59)}:00Z"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of the measured values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def scratch_settings(folder: Path) -> Settings:
    """An embedded store in ``folder`` with checkpoints out of the way of the measurement."""
    return Settings(data_dir=folder, database_url=f"sqlite:///{folder / 'knhk.db'}", db_pool_min=1,
                    db_pool_max=4, checkpoint_every_entries=100_000, checkpoint_every_seconds=3600)
