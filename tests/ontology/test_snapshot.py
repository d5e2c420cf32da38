"""Snapshot ids and digests per SPEC §4: SHA-256 over parent + canonical N-Quads (RDFC-1.0)."""

from __future__ import annotations

import hashlib

import pyoxigraph as ox
import pytest

from knhk.errors import InvalidInputError
from knhk.ontology.core import core_iri, core_triples
from knhk.ontology.rdf import parse_rdf
from knhk.ontology.snapshot import canonical_content, derive, full_graph, make_snapshot
from knhk.sectors import load_pack

TTL = """@prefix : <https://knhk.dev/ns/demo#> .
:a :p "x\\ty", "é"@EN, 1.50 ; :q [ :r 2 ] .
"""


def test_canonical_content_is_rdfc_canonical_nquads() -> None:
    triples = parse_rdf(TTL)
    dataset = ox.Dataset(ox.parse(canonical_content(triples), format=ox.RdfFormat.N_TRIPLES))
    dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    assert "".join(sorted(str(dataset).splitlines(keepends=True))).encode() == canonical_content(triples)


def test_id_and_digest_formulas() -> None:
    triples = parse_rdf(TTL)
    canonical = canonical_content(triples)
    root = make_snapshot("demo", None, triples, origin="root", created_us=1)
    assert root.content_digest == hashlib.sha256(canonical).hexdigest()
    assert root.id == hashlib.sha256(canonical).hexdigest()  # no parent: the empty string
    child = make_snapshot("demo", root.id, triples, origin="proposal", created_us=2)
    assert child.id == hashlib.sha256(root.id.encode() + canonical).hexdigest()
    assert child.content_digest == root.content_digest
    assert child.id != root.id
    assert root.triple_count == len(triples)


def test_identical_content_same_parent_same_id_whatever_the_spelling() -> None:
    a = make_snapshot("demo", None, parse_rdf(TTL), origin="root", created_us=1)
    b = make_snapshot("demo", None, parse_rdf(TTL.replace('"x\\ty", "é"@EN', '"é"@en, "x\\u0009y"')),
                      origin="root", created_us=999)
    assert a.id == b.id
    assert a.content_digest == b.content_digest


def test_root_and_parent_rules() -> None:
    with pytest.raises(InvalidInputError, match="root"):
        make_snapshot("demo", None, [], origin="proposal", created_us=1)
    with pytest.raises(InvalidInputError, match="root"):
        make_snapshot("demo", "a" * 64, [], origin="root", created_us=1)
    with pytest.raises(InvalidInputError, match="origin"):
        make_snapshot("demo", None, [], origin="rollback", created_us=1)
    with pytest.raises(InvalidInputError, match="sector"):
        make_snapshot("Demo!", None, [], origin="root", created_us=1)
    with pytest.raises(InvalidInputError, match="parent snapshot id"):
        make_snapshot("demo", "xyz", [], origin="proposal", created_us=1)


def test_content_may_not_describe_core() -> None:
    with pytest.raises(InvalidInputError, match="Σ_core"):
        make_snapshot("demo", None, [(core_iri("Event"), core_iri("ticks"), '"1"')], origin="root", created_us=1)


def test_derive_applies_delta_and_full_graph_adds_core() -> None:
    pack = load_pack("finance")
    root = make_snapshot("finance", None, pack.sigma, origin="root", created_us=1)
    extra = ("<https://knhk.dev/ns/finance#Card>", "<http://www.w3.org/2000/01/rdf-schema#label>", '"Card"')
    gone = next(t for t in sorted(root.triples) if t[1].endswith("#label>"))
    child = derive(root, additions=[extra], removals=[gone], created_us=2, proposal_id="p1")
    assert child.parent == root.id
    assert child.proposal_id == "p1"
    assert child.origin == "proposal"
    assert child.triples == (root.triples - {gone}) | {extra}
    assert full_graph(child) == child.triples | core_triples()
    assert core_iri("Event") not in {t[0] for t in child.triples}


def test_export_round_trips() -> None:
    root = make_snapshot("finance", None, load_pack("finance").sigma, origin="root", created_us=1)
    assert parse_rdf(root.export("turtle")) == set(root.triples)
    assert parse_rdf(root.export("ntriples"), "ntriples") == set(root.triples)
    assert parse_rdf(root.export("turtle", full=True)) == set(full_graph(root))
    assert "@prefix finance: <https://knhk.dev/ns/finance#>" in root.export("turtle")
