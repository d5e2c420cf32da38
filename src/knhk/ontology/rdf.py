"""RDF in and out of KNHK: parsing Turtle / N-Triples, canonical triples, skolemisation, serialisation.

KNHK hands triples around as ``tuple[str, str, str]`` of canonical N-Triples terms (RDF 1.1 N-Triples §2.4,
canonical form: ``xsd:string`` literals carry no datatype, language tags are lowercase, the RDFC-1.0
escapes). They are hashable, sortable and JSON-friendly. Every way in (``parse_rdf``, ``normalize``) goes
through pyoxigraph, so two spellings of the same triple become the same tuple.

Blank nodes never enter a snapshot: they are skolemised at ingest (RDF 1.1 Concepts §3.5) into
``urn:knhk:skolem:<hash>`` IRIs derived from the RDFC-1.0 canonical labelling of the blank-node-bearing
triples, so the same content always gets the same IRIs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

import pyoxigraph as ox

from knhk.errors import InvalidInputError
from knhk.ontology.namespaces import RDF, STANDARD_PREFIXES, XSD

Triple = tuple[str, str, str]

SKOLEM_PREFIX = "urn:knhk:skolem:"

_FORMATS = {
    "turtle": ox.RdfFormat.TURTLE,
    "ttl": ox.RdfFormat.TURTLE,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "nt": ox.RdfFormat.N_TRIPLES,
}


def rdf_format(name: str) -> ox.RdfFormat:
    """The pyoxigraph format for ``turtle``/``ttl`` or ``ntriples``/``nt``."""
    try:
        return _FORMATS[name.lower()]
    except KeyError:
        raise InvalidInputError(f"unknown RDF format {name!r}; use 'turtle' or 'ntriples'") from None


def _parse_quads(text: str | bytes, fmt: ox.RdfFormat, what: str) -> list[ox.Quad]:
    try:
        return list(ox.parse(text, format=fmt, without_named_graphs=True))
    except SyntaxError as exc:
        raise InvalidInputError(f"{what} is not valid {fmt.name}: {exc.msg}", line=exc.lineno) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{what} is not valid {fmt.name}: {exc}") from None


def _skolem_iri(document_digest: str, label: str) -> ox.NamedNode:
    digest = hashlib.sha256(f"{document_digest}:{label}".encode()).hexdigest()[:32]
    return ox.NamedNode(SKOLEM_PREFIX + digest)


def _skolemise(quads: list[ox.Quad]) -> set[Triple]:
    plain: set[Triple] = set()
    with_blanks: list[ox.Quad] = []
    for quad in quads:
        if isinstance(quad.subject, ox.BlankNode) or isinstance(quad.object, ox.BlankNode):
            with_blanks.append(quad)
        else:
            plain.add((str(quad.subject), str(quad.predicate), str(quad.object)))
    if not with_blanks:
        return plain
    # RDFC-1.0 labels depend only on the quads that mention blank nodes, so canonicalising those alone gives
    # the same labelling as canonicalising the whole graph, at a fraction of the cost.
    dataset = ox.Dataset(ox.Quad(q.subject, q.predicate, q.object) for q in with_blanks)
    dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    canonical = "".join(sorted(f"{q.subject} {q.predicate} {q.object} .\n" for q in dataset))
    document = hashlib.sha256(canonical.encode()).hexdigest()
    names: dict[str, ox.NamedNode] = {}

    def named(term: ox.BlankNode) -> ox.NamedNode:
        if term.value not in names:
            names[term.value] = _skolem_iri(document, term.value)
        return names[term.value]

    for quad in dataset:
        subject = named(quad.subject) if isinstance(quad.subject, ox.BlankNode) else quad.subject
        obj = named(quad.object) if isinstance(quad.object, ox.BlankNode) else quad.object
        plain.add((str(subject), str(quad.predicate), str(obj)))
    return plain


def parse_rdf(text: str | bytes, fmt: str = "turtle", *, what: str = "the RDF input") -> set[Triple]:
    """Parse Turtle or N-Triples into canonical, skolemised triples.

    Bad input raises :class:`InvalidInputError` naming the line and the cause. Named graphs are refused.
    """
    return _skolemise(_parse_quads(text, rdf_format(fmt), what))


def ntriples_line(triple: Triple) -> str:
    return f"{triple[0]} {triple[1]} {triple[2]} .\n"


def normalize(triples: Iterable[Triple | list[str] | tuple[str, ...]], *, what: str = "the triples") -> set[Triple]:
    """Canonicalise triples given as N-Triples term strings (any valid spelling; blank nodes skolemised).

    Raises :class:`InvalidInputError` when a triple is not three terms or a term is not valid N-Triples.
    """
    lines: list[str] = []
    for index, triple in enumerate(triples):
        if not isinstance(triple, list | tuple) or len(triple) != 3 or not all(isinstance(t, str) for t in triple):
            raise InvalidInputError(f"{what}: item {index} is not a triple of three N-Triples terms")
        if any("\n" in t or "\r" in t for t in triple):
            raise InvalidInputError(f"{what}: item {index} has a raw line break inside a term")
        lines.append(f"{triple[0]} {triple[1]} {triple[2]} .\n")
    if not lines:
        return set()
    try:
        return _skolemise(_parse_quads("".join(lines), ox.RdfFormat.N_TRIPLES, what))
    except InvalidInputError as exc:
        line = exc.details.get("line")
        if isinstance(line, int) and 1 <= line <= len(lines):
            raise InvalidInputError(
                f"{what}: triple {line - 1} ({lines[line - 1].strip()}) is not valid N-Triples: "
                f"{exc.message.split(': ', 1)[-1]}", index=line - 1,
            ) from None
        raise


def to_ntriples(triples: Iterable[Triple]) -> str:
    """Sorted N-Triples text, one triple per line (the canonical form KNHK hashes)."""
    return "".join(sorted(ntriples_line(t) for t in triples))


def _ox_triples(triples: Iterable[Triple]) -> list[ox.Triple]:
    text = "".join(ntriples_line(t) for t in triples)
    return [q.triple for q in _parse_quads(text, ox.RdfFormat.N_TRIPLES, "the triples")]


def to_turtle(triples: Iterable[Triple], prefixes: Mapping[str, str] | None = None) -> str:
    """Turtle text with the standard prefixes (and any given ones), subjects in sorted order."""
    all_prefixes = dict(STANDARD_PREFIXES)
    all_prefixes.update(prefixes or {})
    ordered = sorted(triples)
    data = ox.serialize(_ox_triples(ordered), format=ox.RdfFormat.TURTLE, prefixes=all_prefixes)
    assert data is not None
    return data.decode()


def serialize(triples: Iterable[Triple], fmt: str = "turtle", prefixes: Mapping[str, str] | None = None) -> str:
    """Serialise in ``turtle`` or ``ntriples``."""
    if rdf_format(fmt) == ox.RdfFormat.TURTLE:
        return to_turtle(triples, prefixes)
    return to_ntriples(triples)


def to_store(triples: Iterable[Triple]) -> ox.Store:
    """An in-memory pyoxigraph store holding the triples in its default graph (for SPARQL)."""
    store = ox.Store()
    text = "".join(ntriples_line(t) for t in triples)
    if text:
        store.bulk_load(text.encode(), format=ox.RdfFormat.N_TRIPLES)
    return store


_UNESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
_SIMPLE_ESCAPES = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _unescape_one(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] in "uU" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _SIMPLE_ESCAPES.get(code, code)


def literal_parts(term: str) -> tuple[str, str, str | None] | None:
    """``(lexical form, datatype IRI, language)`` of a literal term, or ``None`` when it is not a literal."""
    if not term.startswith('"'):
        return None
    end = term.rfind('"')
    lexical = term[1:end]
    if "\\" in lexical:
        lexical = _UNESCAPE.sub(_unescape_one, lexical)
    rest = term[end + 1:]
    if not rest:
        return lexical, XSD + "string", None
    if rest.startswith("^^<"):
        return lexical, rest[3:-1], None
    return lexical, RDF + "langString", rest[1:]


def literal_value(term: str) -> str | None:
    """The lexical form of a literal term, or ``None`` when it is not a literal."""
    if not term.startswith('"'):
        return None
    lexical = term[1:term.rfind('"')]
    return _UNESCAPE.sub(_unescape_one, lexical) if "\\" in lexical else lexical
