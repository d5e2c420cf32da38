"""``knhk telemetry check``: the registry's static rules, then (unless static only) the live scenario compared
with the registry; optionally the capture written as Weaver JSON samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from knhk.ops.telemetry import conformance
from knhk.ops.telemetry.capture import weaver_samples
from knhk.ops.telemetry.registry import Finding, Registry, RegistryError, load_registry
from knhk.service import telemetry_scenario as scenario


@dataclass
class Result:
    registry: Registry | None
    findings: list[Finding]
    statistics: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not any(f.level == "violation" for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "registry": None if self.registry is None else str(self.registry.path),
                "findings": [f.to_json() for f in self.findings], "statistics": self.statistics}


def assess(registry: Registry, capture: scenario.Capture) -> conformance.Report:
    """Compare a capture with the registry, including the expected-signals rule."""
    report = conformance.Report()
    for s in capture.spans:
        conformance.check_span(report, registry, s)
    index = conformance.metric_index(registry)
    for family in capture.families:
        conformance.check_metric(report, registry, family, index)
    conformance.check_expected(report, registry, postgresql=capture.postgresql)
    report.findings = conformance.dedupe(report.findings)
    return report


def run(registry_dir: Path, *, live: bool = True, scenario_database: str | None = None,
        samples: Path | None = None, extra: Callable[[Any], None] | None = None) -> Result:
    try:
        registry = load_registry(registry_dir)
    except RegistryError as exc:
        return Result(None, exc.findings, {})
    if not live:
        return Result(registry, [], {"registry_signals": len(registry.signals),
                                     "registry_attributes": len(registry.attributes)})
    capture = scenario.run(scenario_database, extra=extra)
    report = assess(registry, capture)
    if samples is not None:
        samples.write_bytes(orjson.dumps(weaver_samples(registry, capture.spans, capture.families),
                                         option=orjson.OPT_INDENT_2))
    stats = report.to_json(registry)["statistics"]
    stats["backend"] = "postgresql" if capture.postgresql else "sqlite"
    return Result(registry, report.findings, stats)
