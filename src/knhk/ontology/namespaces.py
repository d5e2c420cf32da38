"""The RDF namespaces KNHK speaks (RDF 1.1, RDFS, OWL 2, XSD 1.1, SHACL, the ``knhk:`` core vocabulary) and
small helpers that turn an IRI or a Python value into an N-Triples term string (RDF 1.1 N-Triples §2.4)."""

from __future__ import annotations

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
OWL = "http://www.w3.org/2002/07/owl#"
XSD = "http://www.w3.org/2001/XMLSchema#"
SH = "http://www.w3.org/ns/shacl#"
KNHK = "https://knhk.dev/ns/core#"

RDF_TYPE = RDF + "type"
RDF_JSON = RDF + "JSON"
RDF_PROPERTY = RDF + "Property"
RDFS_CLASS = RDFS + "Class"
RDFS_SUBCLASS_OF = RDFS + "subClassOf"
RDFS_DOMAIN = RDFS + "domain"
RDFS_RANGE = RDFS + "range"
OWL_CLASS = OWL + "Class"
OWL_DATATYPE_PROPERTY = OWL + "DatatypeProperty"
OWL_OBJECT_PROPERTY = OWL + "ObjectProperty"
OWL_ANNOTATION_PROPERTY = OWL + "AnnotationProperty"

#: Prefixes used when KNHK writes Turtle.
STANDARD_PREFIXES: dict[str, str] = {
    "rdf": RDF,
    "rdfs": RDFS,
    "owl": OWL,
    "xsd": XSD,
    "sh": SH,
    "knhk": KNHK,
}


def sector_namespace(sector: str) -> str:
    """The namespace of a sector's own vocabulary: ``https://knhk.dev/ns/<sector>#``."""
    return f"https://knhk.dev/ns/{sector}#"


def iri(value: str) -> str:
    """The N-Triples form of an absolute IRI: ``<value>``."""
    return f"<{value}>"


def iri_value(term: str) -> str:
    """The IRI inside an N-Triples IRI term (``<x>`` → ``x``); other terms are returned unchanged."""
    if term.startswith("<") and term.endswith(">"):
        return term[1:-1]
    return term


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"}


def _escape(text: str) -> str:
    if not any(ch in text for ch in '"\\\n\r') and all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in text):
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append({8: "\\b", 9: "\\t", 12: "\\f"}.get(code, f"\\u{code:04X}"))
        else:
            out.append(ch)
    return "".join(out)


def literal(lexical: str, datatype: str = XSD + "string", language: str | None = None) -> str:
    """The canonical N-Triples form of a literal (RDFC-1.0 / canonical N-Triples escaping).

    ``xsd:string`` literals are written without a datatype, as RDF 1.1 canonical N-Triples does.
    """
    body = f'"{_escape(lexical)}"'
    if language is not None:
        return f"{body}@{language.lower()}"
    if datatype == XSD + "string":
        return body
    return f"{body}^^<{datatype}>"
