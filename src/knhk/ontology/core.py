"""Σ_core: the immutable ``knhk:`` vocabulary (SPEC §4), shipped as ``core.ttl`` inside the package.

Σ_core is not part of any snapshot's hashed content; it is combined with a snapshot's Σ_sector when the full
Σ is needed (:func:`knhk.ontology.snapshot.full_graph`). A ΔΣ may not touch it: :func:`touches_core` lists
the triples whose subject lies in the core namespace, and the validation pipeline's static stage rejects
a change for which that list is not empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources

from knhk.ontology.namespaces import KNHK
from knhk.ontology.rdf import Triple, parse_rdf

CORE_NS = KNHK
#: The ontology IRI of Σ_core itself (outside the ``#`` namespace, but equally untouchable).
CORE_ONTOLOGY = "https://knhk.dev/ns/core"

GUARD_KINDS = ("max_value", "min_value", "rate_limit")
CRITICALITIES = ("critical", "high", "medium", "low")
CHATMAN_CONSTANT = 8


def core_iri(local: str) -> str:
    """The N-Triples term of a core name: ``core_iri("Event")`` → ``<https://knhk.dev/ns/core#Event>``."""
    return f"<{CORE_NS}{local}>"


@cache
def core_triples() -> frozenset[Triple]:
    """Σ_core as canonical triples (parsed once per process)."""
    text = resources.files("knhk.ontology").joinpath("core.ttl").read_text(encoding="utf-8")
    return frozenset(parse_rdf(text, "turtle", what="Σ_core (core.ttl)"))


def _in_core(term: str) -> bool:
    return term.startswith(f"<{CORE_NS}") or term == f"<{CORE_ONTOLOGY}>"


def touches_core(triples: Iterable[Triple]) -> list[Triple]:
    """The triples (sorted) whose subject is a Σ_core name; a ΔΣ containing any of them is rejected."""
    return sorted(t for t in triples if _in_core(t[0]))
