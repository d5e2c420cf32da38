"""ΔΣ: a change of a sector's ontology as additions and removals of RDF triples (SPEC §5).

Triples are canonical N-Triples term tuples (see :mod:`knhk.ontology.rdf`). The summary says which classes,
properties, SHACL shapes and guards a change adds or removes; the cost model is SPEC §6's
``ceil(classes×1.0 + properties×0.5 + shapes×3.0)`` over everything the change adds or removes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knhk.errors import InvalidInputError
from knhk.ontology.namespaces import (
    KNHK,
    OWL_CLASS,
    OWL_DATATYPE_PROPERTY,
    OWL_OBJECT_PROPERTY,
    RDF_PROPERTY,
    RDF_TYPE,
    RDFS_CLASS,
    SH,
    iri,
)
from knhk.proof.canonical import canonical_bytes

Triple = tuple[str, str, str]

_TYPE = iri(RDF_TYPE)
_CLASS_TYPES = {iri(RDFS_CLASS), iri(OWL_CLASS)}
_PROPERTY_TYPES = {iri(RDF_PROPERTY), iri(OWL_DATATYPE_PROPERTY), iri(OWL_OBJECT_PROPERTY)}
_SHAPE_TYPES = {iri(SH + "NodeShape"), iri(SH + "PropertyShape")}
_GUARD_TYPES = {iri(KNHK + "Guard")}


def _typed(triples: Iterable[Triple], types: set[str]) -> list[str]:
    return sorted({s for s, p, o in triples if p == _TYPE and o in types})


@dataclass(frozen=True)
class DeltaSummary:
    """What a ΔΣ adds and removes, by kind of thing."""

    classes_added: tuple[str, ...] = ()
    classes_removed: tuple[str, ...] = ()
    properties_added: tuple[str, ...] = ()
    properties_removed: tuple[str, ...] = ()
    shapes_added: tuple[str, ...] = ()
    shapes_removed: tuple[str, ...] = ()
    guards_added: tuple[str, ...] = ()
    guards_removed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class DeltaSigma:
    """An ontology change: triples to add and triples to remove (disjoint, each sorted)."""

    additions: tuple[Triple, ...] = ()
    removals: tuple[Triple, ...] = ()
    _summary: DeltaSummary | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, additions: Iterable[Triple] = (), removals: Iterable[Triple] = ()) -> DeltaSigma:
        add, rem = set(additions), set(removals)
        both = add & rem
        return cls(tuple(sorted(add - both)), tuple(sorted(rem - both)))

    @classmethod
    def between(cls, base: Iterable[Triple], target: Iterable[Triple]) -> DeltaSigma:
        b, t = set(base), set(target)
        return cls(tuple(sorted(t - b)), tuple(sorted(b - t)))

    @property
    def is_empty(self) -> bool:
        return not self.additions and not self.removals

    def apply(self, base: Iterable[Triple]) -> set[Triple]:
        """Σ_new = (Σ_base − removals) ∪ additions."""
        out = set(base)
        out.difference_update(self.removals)
        out.update(self.additions)
        return out

    def effective(self, base: Iterable[Triple]) -> DeltaSigma:
        """The part of this change that actually changes ``base`` (idempotent re-application is empty)."""
        b = base if isinstance(base, set | frozenset) else set(base)  # no copy of a (large) set
        return DeltaSigma(tuple(t for t in self.additions if t not in b), tuple(t for t in self.removals if t in b))

    def summary(self) -> DeltaSummary:
        if self._summary is None:
            object.__setattr__(self, "_summary", DeltaSummary(
                classes_added=tuple(_typed(self.additions, _CLASS_TYPES)),
                classes_removed=tuple(_typed(self.removals, _CLASS_TYPES)),
                properties_added=tuple(_typed(self.additions, _PROPERTY_TYPES)),
                properties_removed=tuple(_typed(self.removals, _PROPERTY_TYPES)),
                shapes_added=tuple(_typed(self.additions, _SHAPE_TYPES)),
                shapes_removed=tuple(_typed(self.removals, _SHAPE_TYPES)),
                guards_added=tuple(_typed(self.additions, _GUARD_TYPES)),
                guards_removed=tuple(_typed(self.removals, _GUARD_TYPES)),
            ))
        assert self._summary is not None
        return self._summary

    def cost(self) -> int:
        """SPEC §6 cost model over the classes, properties and shapes this change adds or removes."""
        s = self.summary()
        classes = len(s.classes_added) + len(s.classes_removed)
        properties = len(s.properties_added) + len(s.properties_removed)
        shapes = len(s.shapes_added) + len(s.shapes_removed)
        return math.ceil(classes * 1.0 + properties * 0.5 + shapes * 3.0)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the change (order-independent)."""
        return hashlib.sha256(canonical_bytes(self.to_json())).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"additions": [list(t) for t in self.additions], "removals": [list(t) for t in self.removals]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeltaSigma:
        if not isinstance(data, Mapping):
            raise InvalidInputError("ΔΣ must be an object with 'additions' and 'removals'")

        def triples(name: str) -> list[Triple]:
            raw = data.get(name, [])
            if not isinstance(raw, list):
                raise InvalidInputError(f"ΔΣ {name} must be a list of [subject, predicate, object] triples")
            out: list[Triple] = []
            for i, t in enumerate(raw):
                if not (isinstance(t, list | tuple) and len(t) == 3 and all(isinstance(x, str) for x in t)):
                    raise InvalidInputError(f"ΔΣ {name}[{i}] is not a [subject, predicate, object] triple of strings")
                out.append((t[0], t[1], t[2]))
            return out

        unknown = set(data) - {"additions", "removals"}
        if unknown:
            raise InvalidInputError(f"ΔΣ has unknown fields: {', '.join(sorted(unknown))}")
        return cls.of(triples("additions"), triples("removals"))
