"""SHACL validation of mapped observations (pySHACL, focus nodes only) and the static meta-check of Σ."""

from __future__ import annotations

import pytest

from knhk.ontology.core import core_triples
from knhk.ontology.extract import extract_schema
from knhk.ontology.mapping import observation_triples
from knhk.ontology.rdf import parse_rdf
from knhk.ontology.schema import SectorSchema
from knhk.ontology.shacl import check_sigma_wellformed, shapes_subgraph, validate, validate_observations
from knhk.sectors import load_pack

FIN = "https://knhk.dev/ns/finance#"
SH = "http://www.w3.org/ns/shacl#"
GOOD = {"account_id": "A1", "transaction_amount": 10, "currency": "EUR"}


@pytest.fixture(scope="module")
def finance() -> tuple[frozenset[tuple[str, str, str]], SectorSchema]:
    sigma = load_pack("finance").sigma
    return sigma, extract_schema("finance", "s" * 64, sigma)


ENGINES = pytest.mark.parametrize("engine", ["auto", "pyshacl"])


@ENGINES
def test_valid_observations_conform(finance: tuple[frozenset[tuple[str, str, str]], SectorSchema],
                                    engine: str) -> None:
    sigma, schema = finance
    report = validate_observations(sigma, [("a", "payment.created", GOOD),
                                           ("b", "payment.error", {"error_code": "E1"})], schema, engine=engine)
    assert report.engine == ("compiled" if engine == "auto" else "pyshacl")
    assert report.conforms
    assert report.violations == ()
    assert report.violation_rate == 0.0
    assert report.focus_nodes == ("urn:knhk:obs:a", "urn:knhk:obs:b")


@ENGINES
def test_each_kind_of_nonconformance_is_reported(
        finance: tuple[frozenset[tuple[str, str, str]], SectorSchema], engine: str) -> None:
    sigma, schema = finance
    report = validate_observations(sigma, [
        ("ok", "payment.created", GOOD),
        ("missing", "payment.created", {"account_id": "A1", "currency": "EUR"}),
        ("datatype", "payment.created", {**GOOD, "transaction_amount": "10"}),
        ("undeclared", "payment.created", {**GOOD, "note": "hi"}),
        ("unknown", "card.swiped", {"x": 1}),
    ], schema, engine=engine)
    assert not report.conforms
    assert report.violating_nodes == {f"urn:knhk:obs:{n}" for n in ("missing", "datatype", "undeclared", "unknown")}
    assert report.violation_rate == pytest.approx(4 / 5)
    (missing,) = report.by_focus["urn:knhk:obs:missing"]
    assert missing.path == FIN + "transaction_amount"
    assert missing.constraint == SH + "MinCountConstraintComponent"
    (datatype,) = report.by_focus["urn:knhk:obs:datatype"]
    assert datatype.constraint == SH + "DatatypeConstraintComponent"
    assert datatype.value == '"10"'
    (closed,) = report.by_focus["urn:knhk:obs:undeclared"]
    assert closed.constraint == SH + "ClosedConstraintComponent"
    assert closed.path == "urn:knhk:field:note"
    (unknown,) = report.by_focus["urn:knhk:obs:unknown"]
    assert "not declared" in unknown.message
    assert report.to_json()["violating_count"] == 4


@ENGINES
def test_only_focus_nodes_are_validated(finance: tuple[frozenset[tuple[str, str, str]], SectorSchema],
                                        engine: str) -> None:
    sigma, schema = finance
    data = observation_triples("bad", "payment.created", {}, schema) + \
        observation_triples("good", "payment.created", GOOD, schema)
    assert validate(sigma, data, ["<urn:knhk:obs:good>"], engine=engine).conforms
    assert not validate(sigma, data, ["urn:knhk:obs:bad"], engine=engine).conforms
    assert validate(sigma, data, [], engine=engine).conforms


@ENGINES
def test_shapes_follow_subclasses_without_inference(engine: str) -> None:
    text = """@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix knhk: <https://knhk.dev/ns/core#> .
@prefix d: <https://knhk.dev/ns/demo#> .
d:Base rdfs:subClassOf knhk:Event .
d:Ping rdfs:subClassOf d:Base ; knhk:eventType "ping" .
d:n rdfs:domain d:Ping ; rdfs:range xsd:integer ; knhk:fieldName "n" .
d:BaseShape sh:targetClass d:Base ; sh:property [ sh:path d:n ; sh:minCount 1 ] .
"""
    sigma = frozenset(parse_rdf(text))
    schema = extract_schema("demo", "s" * 64, sigma)
    assert not validate_observations(sigma, [("x", "ping", {})], schema, engine=engine).conforms
    assert validate_observations(sigma, [("x", "ping", {"n": 1})], schema, engine=engine).conforms


def test_shapes_subgraph_takes_shapes_and_their_lists_only() -> None:
    sigma = load_pack("finance").sigma
    shapes = shapes_subgraph(sigma)
    assert any(t[1] == "<http://www.w3.org/1999/02/22-rdf-syntax-ns#first>" for t in shapes)
    assert not any(t[1] == "<https://knhk.dev/ns/core#eventType>" for t in shapes)


def test_packs_are_wellformed() -> None:
    for sector in ("finance", "healthcare", "manufacturing", "logistics"):
        assert check_sigma_wellformed(load_pack(sector).sigma, context=core_triples()) == []


def test_wellformedness_problems_are_named() -> None:
    d = "https://knhk.dev/ns/demo#"
    rdf_type = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
    triples = [
        (f"<{d}Orphan>", rdf_type, "<http://www.w3.org/2000/01/rdf-schema#Class>"),
        (f"<{d}p>", rdf_type, "<http://www.w3.org/1999/02/22-rdf-syntax-ns#Property>"),
        ("<not an iri>", f"<{d}q>", '"x"'),
        (f"<{d}Ev>", "<https://knhk.dev/ns/core#eventType>", '"ev"'),
        (f"<{d}Ev2>", "<https://knhk.dev/ns/core#eventType>", '"ev"'),
        (f"<{d}G>", rdf_type, "<https://knhk.dev/ns/core#Guard>"),
        (f"<{d}G>", "<https://knhk.dev/ns/core#guardKind>", '"max_value"'),
        ("_:b0", f"<{d}q>", '"x"'),
    ]
    problems = check_sigma_wellformed(triples, context=core_triples())
    text = "\n".join(problems)
    assert f"class <{d}Orphan> has no rdfs:subClassOf" in problems
    assert f"property <{d}p> has no rdfs:domain" in problems
    assert f"property <{d}p> has no rdfs:range" in problems
    assert "<not an iri> is not a valid absolute IRI" in problems
    assert f"event-type class <{d}Ev> is not a subclass of knhk:Event" in problems
    assert "event type 'ev' is declared by several classes" in text
    assert "knhk:limit must be a decimal number" in text
    assert "needs knhk:onField" in text
    assert "knhk:appliesTo must name an event-type class" in text
    assert "blank node _:b0 was not skolemised" in problems


def test_wellformedness_uses_context_for_facts() -> None:
    d = "https://knhk.dev/ns/demo#"
    new = [(f"<{d}C>", "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>",
            "<http://www.w3.org/2002/07/owl#Class>")]
    context = [(f"<{d}C>", "<http://www.w3.org/2000/01/rdf-schema#subClassOf>", "<https://knhk.dev/ns/core#Entity>")]
    assert check_sigma_wellformed(new) == [f"class <{d}C> has no rdfs:subClassOf"]
    assert check_sigma_wellformed(new, context=context) == []
