"""The observation → RDF mapping (docs/observation-rdf-mapping.md is the contract these tests pin)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from knhk.ontology.extract import extract_schema
from knhk.ontology.mapping import observation_node, observation_triples, typed_literal
from knhk.ontology.namespaces import KNHK, RDF_JSON, RDF_TYPE, XSD
from knhk.ontology.schema import SectorSchema
from knhk.sectors import load_pack

FIN = "https://knhk.dev/ns/finance#"
TYPE = f"<{RDF_TYPE}>"


@pytest.fixture(scope="module")
def schema() -> SectorSchema:
    return extract_schema("finance", "s" * 64, load_pack("finance").sigma)


def test_declared_event_and_fields(schema: SectorSchema) -> None:
    triples = observation_triples("0190-a", "payment.created",
                                  {"account_id": "ACC-1", "transaction_amount": 12.5, "currency": "EUR"}, schema)
    node = "<urn:knhk:obs:0190-a>"
    assert triples == [
        (node, TYPE, f"<{FIN}PaymentCreated>"),
        (node, f"<{FIN}account_id>", '"ACC-1"'),
        (node, f"<{FIN}transaction_amount>", f'"12.5"^^<{XSD}decimal>'),
        (node, f"<{FIN}currency>", '"EUR"'),
    ]


def test_integer_for_decimal_field_is_a_decimal(schema: SectorSchema) -> None:
    triples = observation_triples("o", "payment.created", {"transaction_amount": 100}, schema)
    assert triples[1][2] == f'"100"^^<{XSD}decimal>'


@pytest.mark.parametrize(("value", "expected"), [
    ("100.5", '"100.5"'),  # a string where a decimal is declared stays a string: sh:datatype reports it
    (True, f'"true"^^<{XSD}boolean>'),  # bool is never taken for a number
    ({"amount": 1}, f'"{{\\"amount\\":1}}"^^<{RDF_JSON}>'),
    ([1, 2], f'"[1,2]"^^<{RDF_JSON}>'),
])
def test_mismatched_python_type_keeps_its_own_datatype(schema: SectorSchema, value: object, expected: str) -> None:
    triples = observation_triples("o", "payment.created", {"transaction_amount": value}, schema)
    assert triples[1][2] == expected


def test_unknown_event_type_and_undeclared_key(schema: SectorSchema) -> None:
    triples = observation_triples("o 1/2", "card.swiped", {"terminal": "T1", "n": 3}, schema)
    node = observation_node("o 1/2")
    assert node == "<urn:knhk:obs:o%201%2F2>"
    assert triples == [
        (node, TYPE, f"<{KNHK}Event>"),
        (node, f"<{KNHK}eventType>", '"card.swiped"'),
        (node, "<urn:knhk:field:terminal>", '"T1"'),
        (node, "<urn:knhk:field:n>", f'"3"^^<{XSD}integer>'),
    ]
    declared = observation_triples("o", "payment.created", {"surprise": 1.0}, schema)
    assert declared[1] == ("<urn:knhk:obs:o>", "<urn:knhk:field:surprise>", f'"1.0"^^<{XSD}decimal>')


def test_null_means_absent(schema: SectorSchema) -> None:
    assert len(observation_triples("o", "payment.created", {"channel": None}, schema)) == 1


@pytest.mark.parametrize(("value", "declared", "expected"), [
    (Decimal("1E+3"), XSD + "decimal", f'"1000"^^<{XSD}decimal>'),
    (1e-7, XSD + "decimal", f'"0.0000001"^^<{XSD}decimal>'),
    (float("nan"), XSD + "decimal", f'"NaN"^^<{XSD}double>'),
    (2, XSD + "double", f'"2.0"^^<{XSD}double>'),
    ("2024-05-01T10:00:00Z", XSD + "dateTime", f'"2024-05-01T10:00:00Z"^^<{XSD}dateTime>'),
    ("yesterday", XSD + "dateTime", '"yesterday"'),
    ("x\ny", None, '"x\\ny"'),
])
def test_literal_forms(value: object, declared: str | None, expected: str) -> None:
    assert typed_literal(value, declared) == expected
