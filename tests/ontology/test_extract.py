"""The SectorSchema read model extracted from Σ."""

from __future__ import annotations

from decimal import Decimal

import pytest

from knhk.errors import InvalidInputError
from knhk.ontology.extract import extract_schema
from knhk.ontology.rdf import parse_rdf
from knhk.ontology.schema import XSD_BOOLEAN, XSD_DECIMAL, XSD_STRING
from knhk.sectors import load_pack

FIN = "https://knhk.dev/ns/finance#"
PREFIXES = """@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix knhk: <https://knhk.dev/ns/core#> .
@prefix d: <https://knhk.dev/ns/demo#> .
"""


def synthetic_sigma(event_types: int, fields: int = 8) -> str:
    """A schema-dense Σ: every event type with fields, a closed shape and a guard (~97 triples each)."""
    out = [PREFIXES]
    for i in range(event_types):
        out.append(f'd:E{i} a rdfs:Class ; rdfs:subClassOf knhk:Event ; rdfs:label "E{i}" ; '
                   f'knhk:eventType "e{i}.happened" .')
        shapes = []
        for f in range(fields):
            out.append(f'd:E{i}_f{f} a rdf:Property ; rdfs:domain d:E{i} ; rdfs:range xsd:decimal ; '
                       f'knhk:fieldName "f{f}" ; rdfs:label "f{f}" .')
            shapes.append(f"[ sh:path d:E{i}_f{f} ; sh:datatype xsd:decimal ; sh:minCount {f % 2} ; sh:maxCount 1 ]")
        out.append(f"d:E{i}Shape a sh:NodeShape ; sh:targetClass d:E{i} ; sh:closed true ; "
                   f"sh:ignoredProperties ( rdf:type ) ; sh:property {', '.join(shapes)} .")
        out.append(f'd:G{i} a knhk:Guard ; knhk:guardId "G{i}" ; knhk:guardKind "max_value" ; knhk:appliesTo d:E{i} ;'
                   f' knhk:onField "f0" ; knhk:limit 10.5 ; knhk:ticks 1 .')
    return "\n".join(out)


def test_finance_read_model() -> None:
    schema = extract_schema("finance", "s" * 64, load_pack("finance").sigma)
    assert schema.sector == "finance"
    assert schema.snapshot_id == "s" * 64
    assert sorted(schema.event_types) == ["account.opened", "payment.created", "payment.error", "payment.settled"]
    created = schema.event_types["payment.created"]
    assert created.class_iri == FIN + "PaymentCreated"
    assert {n: (f.datatype, f.required) for n, f in created.fields.items()} == {
        "account_id": (XSD_STRING, True), "transaction_amount": (XSD_DECIMAL, True),
        "currency": (XSD_STRING, True), "channel": (XSD_STRING, False),
    }
    assert created.fields["transaction_amount"].property_iri == FIN + "transaction_amount"
    opened = schema.event_types["account.opened"].fields["approval_required"]
    assert opened.datatype == XSD_BOOLEAN
    assert opened.protected
    assert not opened.required
    assert not schema.event_types["payment.error"].fields["account_id"].required
    (guard,) = schema.guards
    assert (guard.guard_id, guard.kind, guard.event_type, guard.field) == \
        ("FIN-LIMIT-001", "max_value", "payment.created", "transaction_amount")
    assert guard.limit == Decimal("1000000")
    assert guard.ticks == 2
    assert guard.hot_path
    assert guard.immutable
    assert guard.criticality == "critical"
    assert schema.protected_classes == {FIN + "Account", FIN + "Transaction"}
    assert schema.protected_properties == {FIN + "approval_required"}
    assert schema.hot_path_ticks("payment.created") == 2
    assert schema.hot_path_ticks("payment.settled") == 0


def test_large_sigma_is_extracted_completely() -> None:
    triples = frozenset(parse_rdf(synthetic_sigma(300)))
    schema = extract_schema("demo", "s" * 64, triples)
    assert len(schema.event_types) == 300
    assert len(schema.guards) == 300
    spec = schema.event_types["e17.happened"]
    assert sorted(spec.fields) == [f"f{f}" for f in range(8)]
    assert [spec.fields[f"f{f}"].required for f in range(8)] == [False, True] * 4
    assert schema.guards_for("e17.happened")[0].limit == Decimal("10.5")


def test_rate_limit_guard_and_defaults() -> None:
    text = PREFIXES + """
d:Ping a rdfs:Class ; rdfs:subClassOf knhk:Event ; knhk:eventType "ping" .
d:RL a knhk:Guard ; knhk:guardId "RL-1" ; knhk:guardKind "rate_limit" ; knhk:appliesTo d:Ping ;
    knhk:limit 100 ; knhk:windowSeconds 30 ; knhk:ticks 1 ; knhk:hotPath false .
"""
    (guard,) = extract_schema("demo", "s" * 64, parse_rdf(text)).guards
    assert guard.kind == "rate_limit"
    assert guard.window_s == 30
    assert not guard.hot_path
    assert guard.criticality == "medium"
    assert not guard.immutable
    assert guard.field is None


@pytest.mark.parametrize(("line", "message"), [
    ('knhk:guardKind "max_size"', "guardKind"),
    ('knhk:guardKind "max_value" ; knhk:limit "lots"', "limit"),
    ('knhk:guardKind "max_value" ; knhk:limit 1 ; knhk:ticks "two"', "ticks"),
])
def test_malformed_guard_is_reported(line: str, message: str) -> None:
    text = PREFIXES + f"""
d:Ping a rdfs:Class ; rdfs:subClassOf knhk:Event ; knhk:eventType "ping" .
d:G a knhk:Guard ; knhk:appliesTo d:Ping ; {line} .
"""
    with pytest.raises(InvalidInputError, match=message):
        extract_schema("demo", "s" * 64, parse_rdf(text))
