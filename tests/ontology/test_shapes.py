"""The compiled SHACL fast path agrees with pySHACL, and steps aside for shapes beyond its subset."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knhk.ontology.core import core_triples
from knhk.ontology.extract import extract_schema
from knhk.ontology.rdf import parse_rdf
from knhk.ontology.shacl import shapes_subgraph, validate, validate_observations
from knhk.ontology.shapes import compile_shapes
from knhk.sectors import available_sectors, load_pack

PACKS = {s: (load_pack(s).sigma, extract_schema(s, "s" * 64, load_pack(s).sigma)) for s in available_sectors()}
VALUES = st.one_of(st.text(alphabet="abcXYZ019 -", max_size=6), st.integers(-5, 10**7), st.booleans(),
                   st.floats(allow_nan=False, allow_infinity=False, width=32), st.none(),
                   st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.sampled_from("ab"), st.integers(0, 2)))


@st.composite
def observations(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    sector = draw(st.sampled_from(sorted(PACKS)))
    schema = PACKS[sector][1]
    out = []
    for index in range(draw(st.integers(1, 8))):
        event_type = draw(st.sampled_from([*sorted(schema.event_types), "unknown.event"]))
        names = sorted(schema.event_types[event_type].fields) if event_type in schema.event_types else []
        keys = draw(st.lists(st.sampled_from([*names, "extra_key"]), unique=True, max_size=len(names) + 1))
        out.append((f"o{index}", event_type, {k: draw(VALUES) for k in keys}))
    return sector, out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations())
def test_compiled_engine_agrees_with_pyshacl(case: tuple[str, list[tuple[str, str, dict[str, Any]]]]) -> None:
    sector, batch = case
    sigma, schema = PACKS[sector]
    fast = validate_observations(sigma, batch, schema)
    reference = validate_observations(sigma, batch, schema, engine="pyshacl")
    assert fast.engine == "compiled"
    assert reference.engine == "pyshacl"

    def key(report: Any) -> Counter[tuple[str, str | None, str]]:
        return Counter((v.focus_node, v.path, v.constraint) for v in report.violations)

    assert key(fast) == key(reference)
    assert fast.violating_nodes == reference.violating_nodes


def test_every_bundled_pack_compiles() -> None:
    for sector, (sigma, _) in PACKS.items():
        shapes = shapes_subgraph(sigma) | shapes_subgraph(core_triples())
        assert compile_shapes(shapes, sigma) is not None, sector


RICH = """@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix knhk: <https://knhk.dev/ns/core#> .
@prefix d: <https://knhk.dev/ns/demo#> .
d:Reading rdfs:subClassOf knhk:Event ; knhk:eventType "reading" .
d:code rdfs:domain d:Reading ; rdfs:range xsd:string ; knhk:fieldName "code" .
d:level rdfs:domain d:Reading ; rdfs:range xsd:integer ; knhk:fieldName "level" .
d:ReadingShape sh:targetClass d:Reading ;
  sh:property [ sh:path d:code ; sh:pattern "^[A-Z]{2}-[0-9]+$" ; sh:maxLength 6 ; sh:in ( "AB-1" "CD-22" "XY-123" ) ] ,
              [ sh:path d:level ; sh:minInclusive 1 ; sh:maxExclusive 5 ; sh:message "level must be 1-4" ] ,
              [ sh:path d:level ; sh:severity sh:Warning ; sh:maxInclusive 2 ] .
"""


def test_richer_core_constraints_match_pyshacl() -> None:
    sigma = frozenset(parse_rdf(RICH))
    schema = extract_schema("demo", "s" * 64, sigma)
    batch: list[tuple[str, str, dict[str, Any]]] = [
        ("ok", "reading", {"code": "AB-1", "level": 3}), ("pattern", "reading", {"code": "ab-1"}),
             ("long", "reading", {"code": "XY-123"}), ("notin", "reading", {"code": "EF-9"}),
             ("low", "reading", {"level": 0}), ("high", "reading", {"level": 5}), ("text", "reading", {"level": "2"})]
    fast = validate_observations(sigma, batch, schema)
    reference = validate_observations(sigma, batch, schema, engine="pyshacl")
    assert fast.engine == "compiled"
    assert {(v.focus_node, v.constraint) for v in fast.violations} == \
        {(v.focus_node, v.constraint) for v in reference.violations}
    assert "urn:knhk:obs:ok" not in fast.violating_nodes
    assert any(v.message == "level must be 1-4" for v in fast.by_focus["urn:knhk:obs:low"])


def test_shapes_beyond_the_subset_fall_back_to_pyshacl() -> None:
    text = RICH + ("d:Other sh:targetClass d:Reading ;"
                   " sh:or ( [ sh:path d:code ; sh:minCount 1 ] [ sh:path d:level ; sh:minCount 1 ] ) .\n")
    sigma = frozenset(parse_rdf(text))
    schema = extract_schema("demo", "s" * 64, sigma)
    report = validate_observations(sigma, [("empty", "reading", {})], schema)
    assert report.engine == "pyshacl"
    assert not report.conforms
    assert validate(sigma, [], ["urn:knhk:obs:none"]).engine == "pyshacl"
