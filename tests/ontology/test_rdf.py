"""RDF helpers: parsing with clear errors, canonical terms, deterministic skolemisation, serialisation."""

from __future__ import annotations

import pyoxigraph as ox
import pytest

from knhk.errors import InvalidInputError
from knhk.ontology.namespaces import XSD, literal
from knhk.ontology.rdf import (
    SKOLEM_PREFIX,
    literal_parts,
    literal_value,
    normalize,
    parse_rdf,
    serialize,
    to_ntriples,
    to_turtle,
)

TTL = """
@prefix : <https://example.org/ns#> .
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
:Shape sh:property [ sh:path :a ; sh:minCount 1 ] , [ sh:path :b ] ;
       sh:ignoredProperties ( rdf:type ) .
:x :label "plain", "tagged"@EN, "1.50"^^<http://www.w3.org/2001/XMLSchema#decimal> .
"""


def test_turtle_parses_to_canonical_term_tuples() -> None:
    triples = parse_rdf(TTL)
    assert ("<https://example.org/ns#x>", "<https://example.org/ns#label>", '"plain"') in triples
    assert ("<https://example.org/ns#x>", "<https://example.org/ns#label>", '"tagged"@en') in triples
    assert ("<https://example.org/ns#x>", "<https://example.org/ns#label>", f'"1.50"^^<{XSD}decimal>') in triples


def test_blank_nodes_are_skolemised_deterministically() -> None:
    first = parse_rdf(TTL)
    second = parse_rdf(TTL.replace("[ sh:path :a ; sh:minCount 1 ] , [ sh:path :b ]",
                                   "[ sh:path :b ] , [ sh:minCount 1 ; sh:path :a ]"))
    assert first == second  # same content, other blank-node order and labels → the same IRIs
    assert not any(term.startswith("_:") for t in first for term in t)
    skolems = {term for t in first for term in t if term.startswith(f"<{SKOLEM_PREFIX}")}
    assert len(skolems) == 3  # two property shapes and one list cell


def test_skolem_iris_depend_on_content() -> None:
    a = parse_rdf("@prefix : <https://e.org/> . :s :p [ :q 1 ] .")
    b = parse_rdf("@prefix : <https://e.org/> . :s :p [ :q 2 ] .")
    assert {t[2] for t in a if t[1] == "<https://e.org/p>"} != {t[2] for t in b if t[1] == "<https://e.org/p>"}


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_rdf('@prefix : <https://e.org/> .\n:a :b :c ;\n    :d "unterminated .\n', what="ΔΣ")
    assert "ΔΣ is not valid Turtle" in err.value.message
    assert err.value.details["line"] == 3


def test_relative_iris_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"absolute IRI|scheme"):
        parse_rdf("<a> <b> <c> .", "ntriples")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown RDF format"):
        parse_rdf("", "rdfxml")


def test_normalize_accepts_any_spelling_of_a_term() -> None:
    spelled = ("<https://e.org/a>", "<https://e.org/b>", f'"x"^^<{XSD}string>')
    assert normalize([spelled]) == {("<https://e.org/a>", "<https://e.org/b>", '"x"')}


def test_normalize_reports_the_bad_triple() -> None:
    with pytest.raises(InvalidInputError, match=r"triple 1 .* is not valid N-Triples"):
        normalize([("<https://e.org/a>", "<https://e.org/b>", "<https://e.org/c>"),
                   ("<https://e.org/a>", "<https://e.org/b>", '"open')])
    with pytest.raises(InvalidInputError, match="item 0 is not a triple"):
        normalize([("<https://e.org/a>", "<https://e.org/b>")])


def test_literal_helper_matches_pyoxigraph_canonical_form() -> None:
    for text in ["plain", 'quote " and \\ backslash', "tab\tnew\nline\r", "\x01\x7f\x08\x0c", "é ☃ \u2028"]:
        assert literal(text) == str(ox.Literal(text))
        assert literal(text, XSD + "token") == str(ox.Literal(text, datatype=ox.NamedNode(XSD + "token")))
        assert literal_value(literal(text)) == text
    assert literal("x", language="EN-gb") == str(ox.Literal("x", language="en-gb"))


def test_literal_parts() -> None:
    assert literal_parts('"5"^^<http://www.w3.org/2001/XMLSchema#integer>') == ("5", XSD + "integer", None)
    assert literal_parts('"hi"@en') == ("hi", "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString", "en")
    assert literal_parts("<https://e.org/a>") is None


def test_serialisations_round_trip() -> None:
    triples = parse_rdf(TTL)
    assert parse_rdf(to_turtle(triples)) == triples
    assert parse_rdf(to_ntriples(triples), "ntriples") == triples
    assert serialize(triples, "nt") == to_ntriples(triples)
    lines = to_ntriples(triples).splitlines()
    assert lines == sorted(lines)
