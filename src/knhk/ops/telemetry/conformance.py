"""Comparing captured telemetry with the registry (the live check's advisors, as in Weaver's live-check, plus
the expected-signals rule Weaver lacks).

Inputs are neutral samples: spans (name, kind, typed attributes, events, resource) from the SDK, and metric
families from a Prometheus exposition. Findings use Weaver's ids where one exists (``missing_attribute``,
``type_mismatch``, ``undefined_enum_variant``, ``required_attribute_not_present``, ``missing_metric``,
``missing_event``, ``unexpected_instrument``) and KNHK's own for ``undeclared_span``,
``attribute_not_declared_on_signal`` and ``missing_expected_signal``. Every finding here is a violation:
stricter than Weaver's defaults (an unknown enum value, for one, fails).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from knhk.ops.telemetry.registry import Attribute, Finding, Registry, Signal

_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds", "By": "bytes",
                "KiBy": "kibibytes", "MiBy": "mebibytes", "%": "percent", "Hz": "hertz"}
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def prometheus_name(signal: Signal) -> str:
    """The Prometheus name of a registry metric (OpenTelemetry → Prometheus compatibility rules)."""
    assert signal.metric_name is not None
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", signal.metric_name)
    unit = signal.unit or ""
    suffix = None
    if unit == "1":
        suffix = "ratio" if signal.instrument == "gauge" else None
    elif unit and not unit.startswith("{"):
        suffix = _UNIT_SUFFIX.get(unit, re.sub(r"[^a-zA-Z0-9_]", "_", unit))
    if suffix and not name.endswith("_" + suffix):
        name += "_" + suffix
    if signal.instrument == "counter" and not name.endswith("_total"):
        name += "_total"
    return name


@dataclass
class SpanSample:
    name: str
    kind: str  # internal | server | client | producer | consumer
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    links: int = 0


@dataclass
class MetricSample:
    """One Prometheus family: its exposition name (counters with ``_total``), type and samples."""

    name: str
    type: str  # counter | gauge | histogram | summary | info | unknown
    points: list[tuple[str, dict[str, str], float]]  # (sample name, labels, value)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)  # signal id → samples matched
    spans: int = 0
    metrics: int = 0

    @property
    def ok(self) -> bool:
        return not any(f.level == "violation" for f in self.findings)

    def to_json(self, registry: Registry) -> dict[str, Any]:
        total = len(registry.signals)
        return {"ok": self.ok, "findings": [f.to_json() for f in self.findings],
                "statistics": {"spans": self.spans, "metric_families": self.metrics,
                               "registry_signals": total,
                               "registry_signals_seen": sum(1 for s in registry.signals if self.seen[s]),
                               "unseen": sorted(s for s in registry.signals if not self.seen[s]),
                               "registry_coverage": round(sum(1 for s in registry.signals if self.seen[s])
                                                          / total, 3) if total else 1.0}}


def _type_ok(attr: Attribute, value: Any) -> str | None:
    """None when ``value`` fits the declared type, else the observed type's name."""
    kind = attr.type
    if kind in ("string", "enum"):
        return None if isinstance(value, str) else type(value).__name__
    if kind == "boolean":
        return None if isinstance(value, bool) else type(value).__name__
    if kind == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else type(value).__name__
    if kind == "double":
        return None if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
    if kind.endswith("[]"):
        if not isinstance(value, list | tuple):
            return type(value).__name__
        inner = Attribute(attr.id, kind[:-2])
        bad = next((x for x in value if _type_ok(inner, x) is not None), None)
        return None if bad is None else f"{type(bad).__name__}[]"
    return None  # any, template


def check_attributes(report: Report, signal: Signal, kind: str, name: str, attributes: dict[str, Any],
                     registry: Registry, *, typed: bool = True) -> None:
    """Every attribute declared on the signal and well typed; every required one present."""
    for key, value in attributes.items():
        declared = registry.attributes.get(key)
        if declared is None:
            report.findings.append(Finding("violation", "missing_attribute", kind, name,
                                           f"attribute {key!r} is not in the registry"))
            continue
        if key not in signal.attributes:
            report.findings.append(Finding("violation", "attribute_not_declared_on_signal", kind, name,
                                           f"attribute {key!r} is not declared on {signal.id}"))
            continue
        if typed:
            wrong = _type_ok(declared, value)
            if wrong is not None:
                report.findings.append(Finding("violation", "type_mismatch", kind, name,
                                               f"attribute {key!r} is {wrong}, declared {declared.type}"))
                continue
        if declared.type == "enum" and str(value) not in declared.members:
            report.findings.append(Finding("violation", "undefined_enum_variant", kind, name,
                                           f"attribute {key!r} = {value!r} is not one of {list(declared.members)}"))
    for key, use in signal.attributes.items():
        if use.level == "required" and key not in attributes:
            report.findings.append(Finding("violation", "required_attribute_not_present", kind, name,
                                           f"required attribute {key!r} is missing"))


def _matches(template: str, span: SpanSample) -> bool:
    if "{" not in template:
        return template == span.name
    try:
        filled = _PLACEHOLDER.sub(lambda m: str(span.attributes[m.group(1)]), template)
    except KeyError:
        return False
    return filled == span.name


def match_span(registry: Registry, span: SpanSample) -> Signal | None:
    for signal in registry.of_type("span"):
        if signal.span_kind == span.kind and any(_matches(t, span) for t in signal.span_names):
            return signal
    return None


def check_span(report: Report, registry: Registry, span: SpanSample) -> None:
    report.spans += 1
    signal = match_span(registry, span)
    if signal is None:
        report.findings.append(Finding("violation", "undeclared_span", "span", span.name,
                                       f"span {span.name!r} (kind {span.kind}) matches no span group in the registry"))
        return
    report.seen[signal.id] += 1
    check_attributes(report, signal, "span", span.name, span.attributes, registry)
    events = {s.name: s for s in registry.of_type("event")}
    for event_name, attrs in span.events:
        event = events.get(event_name)
        if event is None or event_name not in signal.events:
            report.findings.append(Finding(
                "violation", "missing_event", "span_event", event_name,
                f"event {event_name!r} on span {span.name!r} is "
                + ("not in the registry" if event is None else f"not declared on {signal.id}")))
            continue
        report.seen[event.id] += 1
        check_attributes(report, event, "span_event", event_name, attrs, registry)
    entities = registry.of_type("entity")
    if span.resource and entities:
        entity = entities[0]
        report.seen[entity.id] += 1
        check_attributes(report, entity, "resource", entity.name or entity.id, span.resource, registry)


def metric_index(registry: Registry) -> dict[str, Signal]:
    return {prometheus_name(s): s for s in registry.of_type("metric")}


_COMPATIBLE = {"counter": {"counter"}, "gauge": {"gauge", "updowncounter"}, "histogram": {"histogram"},
               "info": {"gauge"}, "summary": set(), "unknown": set(), "stateset": set(), "gaugehistogram": set()}


def check_metric(report: Report, registry: Registry, family: MetricSample,
                 index: dict[str, Signal] | None = None) -> None:
    if not family.points:
        return
    report.metrics += 1
    index = index if index is not None else metric_index(registry)
    signal = index.get(family.name)
    if signal is None:
        report.findings.append(Finding("violation", "missing_metric", "metric", family.name,
                                       f"metric {family.name!r} is exposed but not in the registry"))
        return
    report.seen[signal.id] += 1
    if signal.instrument not in _COMPATIBLE.get(family.type, set()):
        report.findings.append(Finding("violation", "unexpected_instrument", "metric", family.name,
                                       f"exposed as a Prometheus {family.type}, declared {signal.instrument}"))
    label_sets = {tuple(sorted((k, v) for k, v in labels.items() if k not in ("le", "quantile")))
                  for _, labels, _ in family.points}
    for labels in sorted(label_sets):
        check_attributes(report, signal, "metric", family.name, dict(labels), registry, typed=False)


def check_expected(report: Report, registry: Registry, *, postgresql: bool) -> None:
    """Every signal the scenario must emit was emitted."""
    for signal in registry.signals.values():
        wanted = signal.expected == "always" or (signal.expected == "postgresql" and postgresql)
        if wanted and not report.seen[signal.id]:
            kind = {"entity": "resource"}.get(signal.type, signal.type)
            what = prometheus_name(signal) if signal.type == "metric" else signal.display
            report.findings.append(Finding("violation", "missing_expected_signal", kind, what,
                                           f"{signal.id} is declared (expected: {signal.expected}) "
                                           "but was not emitted"))


def dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[Finding] = set()
    out = []
    for f in findings:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out
