"""Ingest-time conformance of an observation to its sector's current snapshot (SPEC §2), measured, never
blocking.

Issues, in this order: ``unknown_event_type`` (the type is not declared; no field checks follow), then per
value key in sorted order ``undeclared_field:<k>`` or ``wrong_datatype:<k>``, then per declared required field
in sorted order ``missing_required:<k>``. A ``null`` for a declared field counts as absent. Datatypes (XSD):

- string-like (``xsd:string``, ``anyURI``, ``token``, ``normalizedString``, ``language``, ``rdf:langString``)
  ↔ ``str``;
- the integer family (``xsd:integer``, ``int``, ``long``, ``short``, ``byte``, the ``nonNegative``/
  ``positive``/``negative``/``nonPositive``/``unsigned`` forms) ↔ ``int`` but not ``bool``;
- ``xsd:decimal``, ``double``, ``float`` ↔ ``int`` or ``float`` but not ``bool``;
- ``xsd:boolean`` ↔ ``bool``;
- ``xsd:dateTime`` / ``dateTimeStamp`` ↔ an RFC 3339 string with offset; ``xsd:date`` ↔ ``YYYY-MM-DD``.

Any other datatype accepts every non-null JSON value (KNHK cannot judge it). A sector with no snapshot
declares nothing, so every event type in it is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from knhk.observations.model import parse_timestamp
from knhk.ontology.schema import XSD, FieldSpec, SectorSchema

RDF_LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
UNKNOWN_EVENT_TYPE = "unknown_event_type"

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _is_bool(v: Any) -> bool:
    return type(v) is bool


def _is_datetime(v: Any) -> bool:
    return type(v) is str and parse_timestamp(v) is not None


def _is_date(v: Any) -> bool:
    if type(v) is not str or not _DATE.fullmatch(v):
        return False
    try:
        date.fromisoformat(v)
    except ValueError:
        return False
    return True


_STRINGS = ("string", "anyURI", "token", "normalizedString", "language")
_INTEGERS = ("integer", "int", "long", "short", "byte", "nonNegativeInteger", "positiveInteger",
             "negativeInteger", "nonPositiveInteger", "unsignedLong", "unsignedInt", "unsignedShort",
             "unsignedByte")
_NUMBERS = ("decimal", "double", "float")

DATATYPE_CHECKS: Mapping[str, Callable[[Any], bool]] = {
    **{XSD + name: _is_str for name in _STRINGS},
    RDF_LANG_STRING: _is_str,
    **{XSD + name: _is_int for name in _INTEGERS},
    **{XSD + name: _is_number for name in _NUMBERS},
    XSD + "boolean": _is_bool,
    XSD + "dateTime": _is_datetime,
    XSD + "dateTimeStamp": _is_datetime,
    XSD + "date": _is_date,
}


def matches_datatype(datatype: str, value: Any) -> bool:
    """Whether a JSON value is a lexical fit for an XSD datatype IRI (see the module docstring)."""
    check = DATATYPE_CHECKS.get(datatype)
    return True if check is None else check(value)


def _conforms(fields: Mapping[str, FieldSpec], value: Mapping[str, Any]) -> bool:
    """Whether ``value`` has no issue against its type's ``fields``: the common answer, found without sorting or
    building anything (a batch asks it of every item); :func:`conformance_issues` names the issues otherwise."""
    for key, item in value.items():
        declared = fields.get(key)
        if declared is None:
            return False
        if item is not None:
            check = DATATYPE_CHECKS.get(declared.datatype)
            if check is not None and not check(item):
                return False
    return not any(declared.required and value.get(name) is None for name, declared in fields.items())


def conformance_issues(event_type: str, value: Mapping[str, Any], schema: SectorSchema | None) -> tuple[str, ...]:
    """The conformance issues of one observation against a sector's schema; empty means conforming."""
    spec = None if schema is None else schema.event_types.get(event_type)
    if spec is None:
        return (UNKNOWN_EVENT_TYPE,)
    if _conforms(spec.fields, value):
        return ()
    issues: list[str] = []
    for key in sorted(value):
        item = value[key]
        declared = spec.fields.get(key)
        if declared is None:
            issues.append(f"undeclared_field:{key}")
        elif item is not None and not matches_datatype(declared.datatype, item):
            issues.append(f"wrong_datatype:{key}")
    for name in sorted(spec.fields):
        if spec.fields[name].required and value.get(name) is None:
            issues.append(f"missing_required:{name}")
    return tuple(issues)
