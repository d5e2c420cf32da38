"""Change classes (SPEC §7, the seed's change management): every proposal gets one, decided from its ΔΣ.

``standard`` (a pre-approved low-risk shape, promoted by the loop without people), ``normal`` (the sector's
approval doctrines), ``major`` (two distinct approvers plus a review window in which any validator may object)
and ``emergency`` (an operator with MFA promotes at once with a justification; a distinct validator reviews it
within a deadline). The rules are the sector pack's ``classes.json`` (:class:`ClassRules`, defaults below), with
configuration over them. A class only ever adds requirements: the sector's mandatory doctrines always apply.

How a ΔΣ is classed (pure; :func:`classify`):

- ``major`` when it changes or removes an existing guard (any guard difference but a new guard), touches a
  protected class or property (removes one of its triples, or adds anything but an annotation to it), or has
  more than ``major_triples`` triples;
- ``standard`` when it removes nothing, adds no guard, adds only new nodes (a new event type, a new field), an
  optional property shape to an existing node shape, or annotations (labels, comments) — and no more than
  ``standard_triples`` triples, and the pack enables the class;
- ``normal`` otherwise.

A proposer may ask for a higher class, never a lower one (the request is noted in the reason). ``emergency`` is
not decided from ΔΣ: it is the path an operator takes at promotion, and never for a ``major`` change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from knhk.errors import ConfigurationError, InvalidInputError
from knhk.ontology.namespaces import KNHK, RDF_TYPE, RDFS, SH, iri
from knhk.ontology.schema import SectorSchema
from knhk.proposals.delta import DeltaSigma, Triple
from knhk.validation.guard_changes import GuardChanges

STANDARD, NORMAL, MAJOR, EMERGENCY = "standard", "normal", "major", "emergency"
CLASSES = (STANDARD, NORMAL, EMERGENCY, MAJOR)
#: the classes a proposer may ask for, lowest first (emergency is an operator's path at promotion)
RANK = {STANDARD: 0, NORMAL: 1, MAJOR: 2}
#: the pending-approval id under which a major change waits for its approvers
MAJOR_RULE = "CLASS-MAJOR"
SKOS = "http://www.w3.org/2004/02/skos/core#"
ANNOTATIONS = frozenset({iri(RDFS + "label"), iri(RDFS + "comment"), iri(SKOS + "definition"), iri(SKOS + "note")})
_GUARD = iri(KNHK + "Guard")
_TYPE = iri(RDF_TYPE)
_SH_PROPERTY = iri(SH + "property")
_SH_MIN_COUNT = iri(SH + "minCount")
_KEYS = frozenset({"standard", "standard_triples", "major_triples", "major_approvers", "review_window_s",
                   "emergency_review_s"})


@dataclass(frozen=True)
class ClassRules:
    """A sector's change-class rules (``classes.json``)."""

    standard: bool = True  # may a change be standard at all in this sector
    standard_triples: int = 40
    major_triples: int = 200
    major_approvers: int = 2
    review_window_s: int = 24 * 3600  # a major change's window for objections
    emergency_review_s: int = 24 * 3600  # an emergency change's post-hoc review is due this long after

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str) -> ClassRules:
        unknown = set(raw) - _KEYS
        if unknown:
            raise ConfigurationError(f"{where}: unknown change-class setting(s) {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "standard":
                if not isinstance(value, bool):
                    raise ConfigurationError(f"{where}: standard must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int) or value < (2 if key == "major_approvers"
                                                                                   else 0):
                raise ConfigurationError(f"{where}: {key} must be a whole number"
                                         f"{' ≥ 2' if key == 'major_approvers' else ' ≥ 0'}")
            values[key] = value
        rules = cls(**values)
        if rules.standard_triples > rules.major_triples:
            raise ConfigurationError(f"{where}: standard_triples may not exceed major_triples")
        return rules

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ChangeClass:
    """A proposal's class and why."""

    name: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"change_class": self.name, "class_reason": self.reason}


def _major_reason(delta: DeltaSigma, base: SectorSchema, changes: GuardChanges, rules: ClassRules) -> str | None:
    altered = [c for c in changes.changes if c.aspect != "added"]
    if altered:
        return "it changes guards: " + changes.describe(tuple(altered[:3]))
    guards = {g.iri.strip("<>"): g.guard_id for g in base.guards}
    for s, _p, _ in (*delta.removals, *delta.additions):
        if s.strip("<>") in guards:
            return f"it changes guards: triples of {guards[s.strip('<>')]}"
    protected = {x.strip("<>") for x in (*base.protected_classes, *base.protected_properties)}
    for s, _p, _ in delta.removals:
        if s.strip("<>") in protected:
            return f"it removes a triple of the protected {s.strip('<>').rsplit('#', 1)[-1]}"
    for s, p, _ in delta.additions:
        if s.strip("<>") in protected and p not in ANNOTATIONS:
            return f"it constrains the protected {s.strip('<>').rsplit('#', 1)[-1]}"
    size = len(delta.additions) + len(delta.removals)
    if size > rules.major_triples:
        return f"it has {size} triples (more than {rules.major_triples})"
    return None


def _standard_problem(delta: DeltaSigma, base_triples: frozenset[Triple], rules: ClassRules) -> str | None:
    if not rules.standard:
        return "the sector pre-approves no change shape"
    if delta.removals:
        return "it removes triples"
    size = len(delta.additions)
    if size > rules.standard_triples:
        return f"it has {size} triples (more than {rules.standard_triples} for a standard change)"
    if any(p == _TYPE and o == _GUARD for _, p, o in delta.additions):
        return "it adds a guard"
    existing = {s for s, _, _ in base_triples}
    linked = {o for s, p, o in delta.additions if p == _SH_PROPERTY and s in existing}
    if any(p == _SH_MIN_COUNT and s in linked for s, p, _ in delta.additions):
        return "it makes a field of an existing type required"
    for s, p, _ in delta.additions:
        if s in existing and p not in ANNOTATIONS and p != _SH_PROPERTY:
            return f"it changes the existing {s.strip('<>').rsplit('#', 1)[-1]}"
    return None


def classify(delta: DeltaSigma, *, base_triples: frozenset[Triple], base_schema: SectorSchema,
             changes: GuardChanges, rules: ClassRules, requested: str | None = None) -> ChangeClass:
    """The class of ``delta`` on its base, never lower than ``requested``."""
    if requested is not None and requested not in RANK:
        raise InvalidInputError(f"a proposer may ask for the class {', '.join(RANK)}, not {requested!r} "
                                "(emergency is an operator's promotion path)")
    major = _major_reason(delta, base_schema, changes, rules)
    if major is not None:
        decided = ChangeClass(MAJOR, f"major: {major}")
    else:
        problem = _standard_problem(delta, base_triples, rules)
        decided = (ChangeClass(STANDARD, "standard: new nodes, optional fields or annotations only, touching "
                                         "nothing protected") if problem is None
                   else ChangeClass(NORMAL, f"normal: {problem}"))
    if requested is None or requested == decided.name:
        return decided
    if RANK[requested] > RANK[decided.name]:
        return ChangeClass(requested, f"{requested}: raised by its proposer ({decided.reason})")
    return ChangeClass(decided.name, f"{decided.reason} (asked for {requested}: a class is never lowered)")
