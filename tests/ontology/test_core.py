"""Σ_core: the vocabulary is shipped, complete, and untouchable."""

from __future__ import annotations

from knhk.ontology.core import CORE_NS, core_iri, core_triples, touches_core
from knhk.ontology.namespaces import RDF_TYPE, RDFS_RANGE, XSD

REQUIRED = ["Event", "Guard", "eventType", "fieldName", "guardId", "guardKind", "appliesTo", "onField", "limit",
            "windowSeconds", "ticks", "hotPath", "criticality", "immutable", "protected"]


def test_core_declares_the_vocabulary() -> None:
    subjects = {t[0] for t in core_triples()}
    for name in REQUIRED:
        assert core_iri(name) in subjects, name
    assert CORE_NS == "https://knhk.dev/ns/core#"


def test_core_ranges() -> None:
    ranges = {t[0]: t[2] for t in core_triples() if t[1] == f"<{RDFS_RANGE}>"}
    assert ranges[core_iri("limit")] == f"<{XSD}decimal>"
    assert ranges[core_iri("ticks")] == f"<{XSD}integer>"
    assert ranges[core_iri("hotPath")] == f"<{XSD}boolean>"
    assert ranges[core_iri("eventType")] == f"<{XSD}string>"


def test_touches_core_lists_only_core_subjects() -> None:
    sector = ("<https://knhk.dev/ns/finance#X>", f"<{RDF_TYPE}>", core_iri("Event"))
    redefine = (core_iri("Event"), "<http://www.w3.org/2000/01/rdf-schema#label>", '"mine"')
    ontology = ("<https://knhk.dev/ns/core>", "<http://www.w3.org/2002/07/owl#versionInfo>", '"2"')
    assert touches_core([sector]) == []
    assert touches_core([sector, redefine, ontology]) == sorted([redefine, ontology])
