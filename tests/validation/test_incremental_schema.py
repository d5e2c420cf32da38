"""The incremental read model (knhk.ontology.incremental) equals a full extraction, on random ΔΣ."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knhk.errors import InvalidInputError
from knhk.ontology.core import core_triples
from knhk.ontology.extract import extract_schema
from knhk.ontology.incremental import Overlay, SigmaIndex, incremental_schema, neighbourhood, subgraph
from knhk.ontology.namespaces import KNHK, RDF_PROPERTY, RDF_TYPE, RDFS, RDFS_CLASS, SH, XSD, iri, literal
from knhk.ontology.schema import SectorSchema
from knhk.proposals.delta import DeltaSigma
from knhk.sectors.pack import load_pack
from knhk.validation.shadow import memory_estimate_mb

BASES = {s: frozenset(load_pack(s).sigma) for s in ("finance", "healthcare")}
INDEXES = {s: SigmaIndex(t) for s, t in BASES.items()}
SCHEMAS = {s: extract_schema(s, "base", t) for s, t in BASES.items()}


def names(sector: str) -> list[str]:
    ns = f"https://knhk.dev/ns/{sector}#"
    subjects = sorted({s for s, _, _ in BASES[sector] if s.startswith(f"<{ns}")})
    return subjects + [iri(ns + n) for n in ("New", "NewShape", "newProp", "NEW-GUARD", "NewShape-p")]


def objects(sector: str) -> list[str]:
    classes = sorted({s for s, p, o in BASES[sector] if p == iri(KNHK + "eventType")})
    return [*classes, iri(XSD + "string"), iri(XSD + "integer"), iri(RDFS_CLASS), iri(RDF_PROPERTY),
                      iri(KNHK + "Guard"), iri(KNHK + "Event"), literal("payment.created"), literal("new.type"),
                      literal("lab.result"), literal("account_id"), literal("fresh"), literal("1", XSD + "integer"),
                      literal("0", XSD + "integer"), literal("true", XSD + "boolean"), literal("rate_limit"),
                      literal("max_value"), literal("5", XSD + "decimal"), literal("medium"),
                      iri(f"https://knhk.dev/ns/{sector}#newProp"), iri(f"https://knhk.dev/ns/{sector}#New"),
                      iri(f"https://knhk.dev/ns/{sector}#NewShape-p")]


PREDICATES = [iri(RDF_TYPE), iri(RDFS + "domain"), iri(RDFS + "range"), iri(RDFS + "subClassOf"),
              iri(KNHK + "eventType"), iri(KNHK + "fieldName"), iri(KNHK + "protected"), iri(SH + "targetClass"),
              iri(SH + "property"), iri(SH + "path"), iri(SH + "minCount"), iri(KNHK + "appliesTo"),
              iri(KNHK + "guardKind"), iri(KNHK + "guardId"), iri(KNHK + "limit"), iri(KNHK + "ticks"),
              iri(KNHK + "hotPath"), iri(KNHK + "immutable"), iri(KNHK + "onField")]


@st.composite
def deltas(draw: st.DrawFn) -> tuple[str, DeltaSigma]:
    sector = draw(st.sampled_from(sorted(BASES)))
    base = sorted(BASES[sector])
    removals = draw(st.lists(st.sampled_from(base), max_size=8, unique=True))
    additions = draw(st.lists(st.tuples(st.sampled_from(names(sector)), st.sampled_from(PREDICATES),
                                        st.sampled_from(objects(sector))), max_size=10, unique=True))
    return sector, DeltaSigma.of(additions, removals).effective(BASES[sector])


def full_or_error(sector: str, triples: frozenset[tuple[str, str, str]]) -> SectorSchema | str:
    try:
        return extract_schema(sector, "cand", triples)
    except InvalidInputError:
        return "error"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deltas())
def test_incremental_schema_equals_full_extraction(case: tuple[str, DeltaSigma]) -> None:
    sector, delta = case
    candidate = frozenset(delta.apply(BASES[sector]))
    expected = full_or_error(sector, candidate)
    overlay = Overlay.of(INDEXES[sector], delta.additions, delta.removals)
    try:
        got: SectorSchema | str = incremental_schema(SCHEMAS[sector], overlay, "cand")
    except InvalidInputError:
        got = "error"
    if expected == "error":
        assert got == "error"
        return
    assert got == expected
    assert list(got.event_types) == list(expected.event_types)  # type: ignore[union-attr]
    # the overlay sees exactly the candidate's triples of every subject in the neighbourhood
    near = neighbourhood(overlay)
    assert subgraph(overlay, near) == frozenset(t for t in candidate if t[0] in near)
    assert overlay.memory_bytes() / (1024 * 1024) == memory_estimate_mb(candidate | core_triples())
