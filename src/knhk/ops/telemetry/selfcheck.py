"""The running service's own telemetry check, which Prometheus can see (``knhk_telemetry_check_ok``).

Every ``KNHK_TELEMETRY_CHECK_INTERVAL_S`` the service compares its own ``/metrics`` exposition with the
registry (every family declared, with the declared instrument and labels) and looks at what the span
conformance processor found since the last run (installed with the OTLP exporter, it checks every finished
span against the registry as it ends). The gauge is 1 when both are clean, 0 otherwise — also when the
registry cannot be loaded (fail closed). ``knhk_telemetry_violations_total{signal_type}`` counts the
findings; the first finding of each kind is logged with its message.

What this does not cover (``knhk telemetry check`` does, in CI): signals that are declared as required but not
emitted — a running service emits what its traffic causes, so absence is only decidable for a scenario.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from knhk.ops.telemetry import metrics
from knhk.ops.telemetry.capture import families_from_text, span_samples
from knhk.ops.telemetry.conformance import Report, check_metric, check_span, metric_index
from knhk.ops.telemetry.registry import Registry, RegistryError, default_registry_dir, load_registry

log = logging.getLogger("knhk.telemetry")

_registry: Registry | None = None
_registry_error: str | None = None
_lock = threading.Lock()
_reported: set[tuple[str, str]] = set()


def registry() -> Registry | None:
    """The shipped registry, loaded once (None, with the reason logged, when it does not load)."""
    global _registry, _registry_error
    with _lock:
        if _registry is None and _registry_error is None:
            try:
                _registry = load_registry(default_registry_dir())
            except RegistryError as exc:
                _registry_error = str(exc)
                log.error("the telemetry registry does not load: %s", exc)
        return _registry


def _report(signal_type: str, report: Report) -> int:
    bad = [f for f in report.findings if f.level == "violation"]
    for f in bad:
        metrics.TELEMETRY_VIOLATIONS.labels(signal_type).inc()
        key = (f.id, f.signal_name)
        if key not in _reported:
            _reported.add(key)
            log.warning("telemetry does not conform to the registry: %s", f)
    return len(bad)


class ConformanceProcessor(SpanProcessor):
    """Checks each finished span against the registry; counts (and logs once) what does not conform."""

    def __init__(self, reg: Registry | None) -> None:
        self.registry = reg
        self.violations = 0

    @classmethod
    def from_default_registry(cls) -> ConformanceProcessor:
        return cls(registry())

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.registry is None:
            return
        report = Report()
        for sample in span_samples([span]):
            check_span(report, self.registry, sample)
        self.violations += _report("span", report)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_last_span_violations = 0


def check_exposition(text: str, processor: ConformanceProcessor | None = None) -> bool:
    """Check an exposition (and the span processor's findings since the last call); set the gauges."""
    global _last_span_violations
    reg = registry()
    ok = reg is not None
    if reg is not None:
        report = Report()
        index = metric_index(reg)
        for family in families_from_text(text):
            check_metric(report, reg, family, index)
        ok = _report("metric", report) == 0
    if processor is not None:
        ok = ok and processor.violations == _last_span_violations
        _last_span_violations = processor.violations
    metrics.TELEMETRY_OK.set(1 if ok else 0)
    metrics.TELEMETRY_CHECKED_AT.set(time.time())
    return ok


def active_processor() -> ConformanceProcessor | None:
    """The conformance processor of the configured tracer provider, if tracing is on."""
    from knhk.ops.telemetry import spans

    provider = spans.provider()
    multi = getattr(provider, "_active_span_processor", None)
    for p in getattr(multi, "_span_processors", ()):
        if isinstance(p, ConformanceProcessor):
            return p
    return None


def hot_path_ticks(sector: str, schema: Any) -> int:
    """Set ``knhk_hot_path_ticks{sector}``: the largest declared hot-path cost of any event type of ``schema``."""
    types = set(getattr(schema, "event_types", ())) or {""}
    ticks = max(schema.hot_path_ticks(t) for t in types)
    metrics.HOT_PATH_TICKS.labels(sector).set(ticks)
    return int(ticks)
