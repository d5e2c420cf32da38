"""Observation → RDF: the public mapping contract of SPEC §2 (documented in docs/observation-rdf-mapping.md).

An observation becomes the node ``urn:knhk:obs:<id>`` typed with the class that declares
``knhk:eventType "<event_type>"``; each key of ``value`` becomes the property declared for that key
(``knhk:fieldName "<key>"``) with a literal typed by the declared datatype when the Python value fits it,
and by the datatype the value actually has when it does not, so SHACL ``sh:datatype`` reports the mismatch.
Unknown event types and undeclared keys are mapped too (``knhk:Event`` + ``knhk:eventType``, and
``urn:knhk:field:<key>``), so closed shapes and Q2 see them instead of silently dropping them.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson

from knhk.ontology.namespaces import KNHK, RDF_JSON, RDF_TYPE, XSD, literal
from knhk.ontology.rdf import Triple
from knhk.ontology.schema import XSD_BOOLEAN, XSD_DATETIME, XSD_DECIMAL, XSD_INTEGER, XSD_STRING, SectorSchema
from knhk.ops.clock import parse_rfc3339

OBS_PREFIX = "urn:knhk:obs:"
FIELD_PREFIX = "urn:knhk:field:"
_TYPE = f"<{RDF_TYPE}>"
_EVENT = f"<{KNHK}Event>"
_EVENT_TYPE = f"<{KNHK}eventType>"
_XSD_DOUBLE = XSD + "double"
_XSD_FLOAT = XSD + "float"
_SAFE = "-._~:@!$&'()*+,;="  # RFC 3987 ipchar minus '%' and '/', kept as they are


def observation_node(obs_id: str) -> str:
    """The N-Triples term of an observation's node: ``<urn:knhk:obs:<id>>`` (id percent-encoded)."""
    return f"<{OBS_PREFIX}{quote(obs_id, safe=_SAFE)}>"


def undeclared_field_property(key: str) -> str:
    """The property term an undeclared ``value`` key maps to: ``<urn:knhk:field:<key>>``."""
    return f"<{FIELD_PREFIX}{quote(key, safe=_SAFE)}>"


def _decimal_lexical(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    return text


def _float_lexical(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    return repr(value).replace("e+", "E").replace("e", "E")


def _natural(value: Any) -> tuple[str, str]:
    """(lexical, datatype) by the value's own Python/JSON type."""
    if isinstance(value, bool):
        return ("true" if value else "false"), XSD_BOOLEAN
    if isinstance(value, int):
        return str(value), XSD_INTEGER
    if isinstance(value, Decimal):
        if value.is_finite():
            return _decimal_lexical(value), XSD_DECIMAL
        return _float_lexical(float(value)), _XSD_DOUBLE
    if isinstance(value, float):
        if math.isfinite(value):
            return _decimal_lexical(Decimal(repr(value))), XSD_DECIMAL
        return _float_lexical(value), _XSD_DOUBLE
    if isinstance(value, str):
        return value, XSD_STRING
    # nested objects and lists (and anything else JSON can carry) as compact canonical JSON
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode(), RDF_JSON


def typed_literal(value: Any, declared: str | None) -> str:
    """The literal term for ``value`` given the field's declared datatype (``None``: undeclared field)."""
    if declared is not None and not isinstance(value, bool):
        if declared == XSD_DECIMAL and isinstance(value, int):  # every integer is a decimal (XSD 1.1 §3.3.3)
            return literal(str(value), XSD_DECIMAL)
        if declared in (_XSD_DOUBLE, _XSD_FLOAT) and isinstance(value, int | float | Decimal):
            return literal(_float_lexical(float(value)), declared)
        if declared == XSD_DATETIME and isinstance(value, str):
            try:
                parse_rfc3339(value)
            except ValueError:
                pass
            else:
                return literal(value, XSD_DATETIME)
    lexical, datatype = _natural(value)
    return literal(lexical, datatype)


def observation_triples(obs_id: str, event_type: str, value: dict[str, Any],
                        schema: SectorSchema) -> list[Triple]:
    """The RDF of one observation under a sector snapshot's read model (see the module docstring)."""
    node = observation_node(obs_id)
    spec = schema.event_types.get(event_type)
    triples: list[Triple] = []
    if spec is None:
        triples.append((node, _TYPE, _EVENT))
        triples.append((node, _EVENT_TYPE, literal(event_type)))
        fields = {}
    else:
        triples.append((node, _TYPE, f"<{spec.class_iri}>"))
        fields = spec.fields
    for key, item in value.items():
        if item is None:  # JSON null: the field is absent
            continue
        field = fields.get(key)
        if field is None:
            triples.append((node, undeclared_field_property(key), typed_literal(item, None)))
        else:
            triples.append((node, f"<{field.property_iri}>", typed_literal(item, field.datatype)))
    return triples
