"""The telemetry registry (OTel Weaver semantic-convention format, v1 ``groups`` syntax): loading, the static
check of the format's own rules, and the resolved model the live check compares telemetry against.

The static rules mirror Weaver's (``weaver registry check``): only ``groups``/``imports`` at the top of a file;
unknown keys are errors; every group has an id, a brief and a type; stability on every group but attribute
groups (never ``deprecated``); spans have a span_kind; events a name; metrics a metric_name, a known instrument
and a unit; attribute types, requirement levels and stabilities from the closed sets; no ``prefix``; refs,
``extends`` and span ``events`` resolve; no duplicate group id, attribute id or ref within a group. KNHK adds one
convention: ``annotations.knhk`` may hold ``span_name`` (how the group's spans are named) and ``expected``
(``always``, ``postgresql`` or ``optional``: when the live scenario must emit the signal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_FILES = ("registry_manifest.yaml", "manifest.yaml")
MANIFEST_KEYS = {"name", "description", "semconv_version", "schema_base_url", "dependencies", "stability"}
GROUP_KEYS = {"id", "type", "brief", "note", "prefix", "extends", "stability", "deprecated", "attributes",
              "span_kind", "events", "metric_name", "instrument", "unit", "name", "display_name", "body",
              "annotations", "entity_associations"}
ATTRIBUTE_KEYS = {"id", "type", "brief", "examples", "tag", "requirement_level", "sampling_relevant", "note",
                  "stability", "deprecated", "annotations", "role"}
REF_KEYS = {"ref", "brief", "examples", "tag", "requirement_level", "sampling_relevant", "note", "stability",
            "deprecated", "annotations", "prefix"}
MEMBER_KEYS = {"id", "value", "brief", "note", "stability", "deprecated", "annotations"}
GROUP_TYPES = {"attribute_group", "span", "event", "metric", "metric_group", "entity", "resource", "scope"}
STABILITIES = {"stable", "development", "experimental", "alpha", "beta", "release_candidate"}
SPAN_KINDS = {"internal", "client", "server", "producer", "consumer"}
INSTRUMENTS = {"counter", "updowncounter", "gauge", "histogram"}
PRIMITIVE_TYPES = {"string", "int", "double", "boolean", "any", "string[]", "int[]", "double[]", "boolean[]"}
LEVELS = {"required", "recommended", "opt_in"}
EXPECTED = {"always", "postgresql", "optional"}
_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


@dataclass(frozen=True)
class Finding:
    """One problem: ``level`` violation (fails the check) or information; ``id`` names the rule."""

    level: str
    id: str
    signal_type: str
    signal_name: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: [{self.id}] {self.signal_type} {self.signal_name}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"level": self.level, "id": self.id, "signal_type": self.signal_type,
                "signal_name": self.signal_name, "message": self.message}


@dataclass(frozen=True)
class Attribute:
    id: str
    type: str  # a primitive type, or "enum"
    members: tuple[str, ...] = ()
    stability: str = "development"


@dataclass(frozen=True)
class Use:
    """An attribute as a signal uses it: its definition and requirement level."""

    attribute: Attribute
    level: str  # required | recommended | opt_in | conditionally_required


@dataclass
class Signal:
    """A resolved span, metric, event or entity group."""

    id: str
    type: str
    brief: str
    attributes: dict[str, Use] = field(default_factory=dict)
    span_kind: str | None = None
    span_names: tuple[str, ...] = ()
    events: tuple[str, ...] = ()  # event names
    metric_name: str | None = None
    instrument: str | None = None
    unit: str | None = None
    name: str | None = None
    expected: str = "always"

    @property
    def display(self) -> str:
        return self.metric_name or self.name or (self.span_names[0] if self.span_names else self.id)


@dataclass
class Registry:
    """The resolved registry."""

    path: Path
    name: str
    attributes: dict[str, Attribute]
    signals: dict[str, Signal]

    def of_type(self, kind: str) -> list[Signal]:
        return [s for s in self.signals.values() if s.type == kind]


class RegistryError(Exception):
    """The registry does not pass its static check."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("; ".join(str(f) for f in findings))
        self.findings = findings


def _v(findings: list[Finding], rule: str, where: str, message: str, kind: str = "registry") -> None:
    findings.append(Finding("violation", rule, kind, where, message))


def _level(raw: Any) -> str | None:
    if raw is None:
        return "recommended"
    if isinstance(raw, str):
        return raw if raw in LEVELS else None
    if isinstance(raw, dict) and len(raw) == 1:
        (key, value), = raw.items()
        if key in ("conditionally_required", "recommended") and isinstance(value, str):
            return "conditionally_required" if key == "conditionally_required" else "recommended"
    return None


def _attribute_type(raw: Any, where: str, findings: list[Finding]) -> tuple[str, tuple[str, ...]] | None:
    if isinstance(raw, str):
        if raw in PRIMITIVE_TYPES or re.fullmatch(r"template\[(string|int|double|boolean|any)(\[\])?\]", raw):
            return raw, ()
        _v(findings, "invalid_attribute_type", where, f"type {raw!r} is not a semantic-convention type")
        return None
    if isinstance(raw, dict):
        extra = set(raw) - {"members"}
        if extra or not isinstance(raw.get("members"), list) or not raw["members"]:
            _v(findings, "invalid_attribute_type", where, "an enum type is {members: [...]} with at least one member")
            return None
        values: list[str] = []
        for m in raw["members"]:
            if not isinstance(m, dict):
                _v(findings, "invalid_enum_member", where, f"enum member {m!r} is not a mapping")
                continue
            unknown = set(m) - MEMBER_KEYS
            if unknown:
                _v(findings, "unknown_key", where, f"enum member {m.get('id')!r} has unknown key(s) {sorted(unknown)}")
            if "id" not in m or "value" not in m:
                _v(findings, "invalid_enum_member", where, f"enum member {m!r} needs an id and a value")
                continue
            if m.get("stability") is None:
                _v(findings, "missing_stability", where, f"enum member {m['id']!r} has no stability")
            elif m["stability"] not in STABILITIES:
                _v(findings, "invalid_stability", where, f"enum member {m['id']!r}: stability {m['stability']!r}")
            values.append(str(m["value"]))
        if len(set(values)) != len(values):
            _v(findings, "duplicate_enum_member", where, "enum values repeat")
        return "enum", tuple(values)
    _v(findings, "invalid_attribute_type", where, f"type {raw!r} is neither a type name nor an enum")
    return None


def load_registry(path: Path) -> Registry:
    """Load and statically check a registry directory; raise :class:`RegistryError` listing every finding."""
    findings: list[Finding] = []
    path = Path(path)
    if not path.is_dir():
        raise RegistryError([Finding("violation", "registry_not_found", "registry", str(path),
                                     "no such registry directory")])
    manifest_path = next((path / n for n in MANIFEST_FILES if (path / n).is_file()), None)
    name = path.name
    if manifest_path is None:
        _v(findings, "missing_manifest", str(path), f"no {MANIFEST_FILES[0]}")
    else:
        try:
            manifest = yaml.safe_load(manifest_path.read_text())
        except yaml.YAMLError as exc:
            manifest = None
            _v(findings, "invalid_yaml", manifest_path.name, str(exc).replace("\n", " "))
        if manifest is not None and not isinstance(manifest, dict):
            _v(findings, "invalid_manifest", manifest_path.name, "the manifest is not a mapping")
        elif isinstance(manifest, dict):
            for key in sorted(set(manifest) - MANIFEST_KEYS):
                _v(findings, "unknown_key", manifest_path.name, f"unknown manifest key {key!r}")
            for key in ("name", "semconv_version", "schema_base_url"):
                if not isinstance(manifest.get(key), str) or not manifest.get(key):
                    _v(findings, "invalid_manifest", manifest_path.name, f"the manifest needs {key!r} (a string)")
            name = str(manifest.get("name", name))
    groups: list[tuple[str, dict[str, Any]]] = []
    files = sorted(p for p in path.rglob("*.yaml") if p.name not in MANIFEST_FILES)
    if not files:
        _v(findings, "empty_registry", str(path), "no semantic-convention files")
    for f in files:
        rel = str(f.relative_to(path))
        try:
            doc = yaml.safe_load(f.read_text())
        except yaml.YAMLError as exc:
            _v(findings, "invalid_yaml", rel, str(exc).replace("\n", " "))
            continue
        if not isinstance(doc, dict):
            _v(findings, "invalid_file", rel, "a semantic-convention file is a mapping with 'groups'")
            continue
        for key in sorted(set(doc) - {"groups", "imports"}):
            _v(findings, "unknown_key", rel, f"unknown top-level key {key!r} (only groups and imports)")
        raw_groups = doc.get("groups", [])
        if not isinstance(raw_groups, list):
            _v(findings, "invalid_file", rel, "'groups' must be a list")
            continue
        for g in raw_groups:
            if not isinstance(g, dict):
                _v(findings, "invalid_group", rel, f"group {g!r} is not a mapping")
                continue
            groups.append((rel, g))
    attributes: dict[str, Attribute] = {}
    by_id: dict[str, dict[str, Any]] = {}
    for rel, g in groups:
        gid = g.get("id")
        where = f"{rel}:{gid}"
        if not isinstance(gid, str) or not gid:
            _v(findings, "invalid_group", rel, f"a group without an id: {sorted(g)}")
            continue
        if gid in by_id:
            _v(findings, "duplicate_group_id", where, f"group id {gid!r} is declared twice")
        else:
            by_id[gid] = g
        for key in sorted(set(g) - GROUP_KEYS):
            _v(findings, "unknown_key", where, f"unknown group key {key!r}")
        gtype = g.get("type")
        if gtype not in GROUP_TYPES:
            _v(findings, "invalid_group_type", where, f"type {gtype!r} is not one of {sorted(GROUP_TYPES)}")
        if not isinstance(g.get("brief"), str):
            _v(findings, "missing_brief", where, "a group needs a brief")
        if g.get("prefix"):
            _v(findings, "group_uses_prefix", where, "'prefix' is no longer supported")
        stability = g.get("stability")
        if gtype != "attribute_group" and stability is None:
            _v(findings, "missing_stability", where, "this group has no stability")
        elif stability is not None and stability not in STABILITIES:
            _v(findings, "invalid_stability", where, f"stability {stability!r}")
        if gtype not in ("metric", "event") and not g.get("attributes") and not g.get("extends"):
            _v(findings, "missing_attributes", where, "this group has neither attributes nor extends")
        if gtype != "span" and (g.get("span_kind") is not None or g.get("events")):
            _v(findings, "invalid_group", where, "span_kind and events belong to span groups only")
        if gtype == "span" and g.get("span_kind") not in SPAN_KINDS:
            _v(findings, "invalid_span_kind", where, f"span_kind {g.get('span_kind')!r} (one of {sorted(SPAN_KINDS)})")
        if gtype == "event" and not g.get("name"):
            _v(findings, "missing_event_name", where, "an event group needs a name")
        if gtype == "metric":
            if not g.get("metric_name"):
                _v(findings, "missing_metric_name", where, "a metric group needs a metric_name")
            if g.get("instrument") not in INSTRUMENTS:
                _v(findings, "invalid_instrument", where,
                   f"instrument {g.get('instrument')!r} (one of {sorted(INSTRUMENTS)})")
            if not isinstance(g.get("unit"), str):
                _v(findings, "missing_unit", where, "a metric group needs a unit")
        ann = g.get("annotations")
        knhk = ann.get("knhk") if isinstance(ann, dict) else None
        if ann is not None and not isinstance(ann, dict):
            _v(findings, "invalid_annotations", where, "annotations must be a mapping")
        if knhk is not None:
            if not isinstance(knhk, dict) or set(knhk) - {"span_name", "expected", "why"}:
                _v(findings, "invalid_annotations", where, "annotations.knhk holds span_name, expected and why only")
            elif knhk.get("expected", "always") not in EXPECTED:
                _v(findings, "invalid_annotations", where,
                   f"expected {knhk.get('expected')!r} (one of {sorted(EXPECTED)})")
        raw_attrs = g.get("attributes") or []
        if not isinstance(raw_attrs, list):
            _v(findings, "invalid_group", where, "'attributes' must be a list")
            continue
        for a in raw_attrs:
            if not isinstance(a, dict):
                _v(findings, "invalid_attribute", where, f"attribute {a!r} is not a mapping")
                continue
            if "id" in a and "ref" in a:
                _v(findings, "invalid_attribute", where, f"attribute {a['id']!r} has both id and ref")
                continue
            if "id" in a:
                aid = a["id"]
                awhere = f"{where}:{aid}"
                for key in sorted(set(a) - ATTRIBUTE_KEYS):
                    _v(findings, "unknown_key", awhere, f"unknown attribute key {key!r}")
                if not isinstance(aid, str) or not _ID.match(aid):
                    _v(findings, "invalid_attribute_id", awhere, "attribute ids are lowercase dotted names")
                    continue
                if aid in attributes:
                    _v(findings, "duplicate_attribute_id", awhere, f"attribute {aid!r} is declared twice")
                    continue
                if not isinstance(a.get("brief"), str) and a.get("deprecated") is None:
                    _v(findings, "missing_brief", awhere, "an attribute needs a brief")
                if a.get("stability") is None:
                    _v(findings, "missing_stability", awhere, "an attribute needs a stability")
                elif a["stability"] not in STABILITIES:
                    _v(findings, "invalid_stability", awhere, f"stability {a['stability']!r}")
                if _level(a.get("requirement_level")) is None:
                    _v(findings, "invalid_requirement_level", awhere,
                       f"requirement_level {a.get('requirement_level')!r}")
                typed = _attribute_type(a.get("type"), awhere, findings)
                if typed is not None:
                    attributes[aid] = Attribute(aid, typed[0], typed[1], str(a.get("stability", "development")))
            elif "ref" in a:
                for key in sorted(set(a) - REF_KEYS):
                    _v(findings, "unknown_key", f"{where}:{a['ref']}", f"unknown key {key!r} on a ref")
                if _level(a.get("requirement_level")) is None:
                    _v(findings, "invalid_requirement_level", f"{where}:{a['ref']}",
                       f"requirement_level {a.get('requirement_level')!r}")
            else:
                _v(findings, "invalid_attribute", where, f"attribute {sorted(a)} has neither id nor ref")
    # second pass: refs, extends, events
    signals: dict[str, Signal] = {}
    event_names = {g["id"]: g.get("name") for g in by_id.values() if g.get("type") == "event"}
    for gid, g in by_id.items():
        where = gid
        seen_refs: set[str] = set()
        uses: dict[str, Use] = {}
        parent = g.get("extends")
        if parent is not None:
            if parent not in by_id:
                _v(findings, "unresolved_extends", where, f"extends {parent!r}, which is not a group")
            else:
                for a in by_id[parent].get("attributes") or []:
                    key = a.get("id") or a.get("ref") if isinstance(a, dict) else None
                    if isinstance(key, str) and key in attributes:
                        uses[key] = Use(attributes[key], _level(a.get("requirement_level")) or "recommended")
        for a in g.get("attributes") or []:
            if not isinstance(a, dict):
                continue
            key = a.get("ref") if "ref" in a else a.get("id")
            if "ref" in a:
                if key in seen_refs:
                    _v(findings, "duplicate_attribute_ref", where, f"attribute {key!r} is referenced twice")
                seen_refs.add(str(key))
                if key not in attributes:
                    _v(findings, "unresolved_attribute_ref", where, f"ref {key!r} names no declared attribute")
                    continue
            if isinstance(key, str) and key in attributes:
                uses[key] = Use(attributes[key], _level(a.get("requirement_level")) or "recommended")
        events: list[str] = []
        for e in g.get("events") or []:
            if e not in event_names:
                _v(findings, "unresolved_event_ref", where, f"span event {e!r} names no event group")
            else:
                events.append(str(event_names[e]))
        gtype = g.get("type")
        if gtype in ("span", "metric", "event", "entity", "resource"):
            knhk = (g.get("annotations") or {}).get("knhk") or {}
            names = knhk.get("span_name") if isinstance(knhk, dict) else None
            span_names = tuple(names) if isinstance(names, list) else ((names,) if isinstance(names, str) else ())
            if gtype == "span" and not span_names:
                _v(findings, "missing_span_name", where, "a span group needs annotations.knhk.span_name")
            signals[gid] = Signal(
                gid, "entity" if gtype == "resource" else str(gtype), str(g.get("brief", "")), uses,
                span_kind=g.get("span_kind"), span_names=span_names, events=tuple(events),
                metric_name=g.get("metric_name"), instrument=g.get("instrument"), unit=g.get("unit"),
                name=g.get("name"), expected=str(knhk.get("expected", "always")) if isinstance(knhk, dict)
                else "always")
    seen_metric: dict[str, str] = {}
    for s in signals.values():
        if s.metric_name:
            if s.metric_name in seen_metric:
                _v(findings, "duplicate_metric_name", s.id,
                   f"metric {s.metric_name!r} is also {seen_metric[s.metric_name]}")
            seen_metric[s.metric_name] = s.id
    if findings:
        raise RegistryError(findings)
    return Registry(path, name, attributes, signals)


def default_registry_dir() -> Path:
    """The registry shipped with KNHK: ``knhk/_registry`` in an installed wheel, ``registry/`` in a checkout."""
    here = Path(__file__).resolve()
    packaged = here.parents[2] / "_registry"
    if packaged.is_dir():
        return packaged
    return here.parents[4] / "registry"
