"""OTLP export of the service's metrics: the Prometheus series of ``/metrics`` (one source of truth), sent
every ``OTEL_METRIC_EXPORT_INTERVAL`` ms (default 60000) under their registry names and units
(``knhk_requests_total`` → ``knhk.requests``, ``{request}``), as cumulative sums, gauges and explicit-bucket
histograms. Series the registry does not declare keep their Prometheus name (and the self-check reports them).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from knhk import __version__
from knhk.ops.telemetry.capture import families_from_text
from knhk.ops.telemetry.conformance import MetricSample, metric_index
from knhk.ops.telemetry.metrics import render
from knhk.ops.telemetry.registry import Signal

log = logging.getLogger("knhk.telemetry")


def _render() -> str:
    return render().decode()


def _histogram_points(family: MetricSample, start: int, now: int) -> list[HistogramDataPoint]:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for name, labels, value in family.points:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "count": 0, "sum": 0.0})
        if name.endswith("_bucket"):
            s["buckets"].append((float(labels["le"]), value))
        elif name.endswith("_count"):
            s["count"] = int(value)
        elif name.endswith("_sum"):
            s["sum"] = float(value)
    out = []
    for key, s in series.items():
        cumulative = sorted(s["buckets"])
        counts, prev = [], 0.0
        for _, c in cumulative:
            counts.append(int(c - prev))
            prev = c
        bounds = [b for b, _ in cumulative if b != float("inf")]
        out.append(HistogramDataPoint(attributes=dict(key), start_time_unix_nano=start, time_unix_nano=now,
                                      count=s["count"], sum=s["sum"], bucket_counts=counts, explicit_bounds=bounds,
                                      min=float("nan"), max=float("nan")))
    return out


def to_metrics_data(text: str, resource: Resource, index: dict[str, Signal], start: int) -> MetricsData:
    """A Prometheus exposition as OTLP metrics data."""
    now = time.time_ns()
    metrics: list[Metric] = []
    for fam in families_from_text(text):
        if not fam.points:
            continue
        signal = index.get(fam.name)
        name = signal.metric_name if signal is not None and signal.metric_name else fam.name
        unit = signal.unit if signal is not None and signal.unit else ""
        data: Any
        if fam.type == "histogram":
            data = Histogram(_histogram_points(fam, start, now), AggregationTemporality.CUMULATIVE)
        else:
            points = [NumberDataPoint(attributes=labels, start_time_unix_nano=start, time_unix_nano=now, value=v)
                      for _, labels, v in fam.points]
            if fam.type == "counter":
                data = Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
            else:
                data = Gauge(points)
        metrics.append(Metric(name=name, description=signal.brief if signal else "", unit=unit, data=data))
    scope = ScopeMetrics(InstrumentationScope("knhk", __version__), metrics, schema_url="")
    return MetricsData([ResourceMetrics(resource, [scope], schema_url="")])


class PrometheusBridge:
    """A thread that exports the exposition over OTLP every interval."""

    def __init__(self, resource: Resource, exporter: Any, interval_s: float) -> None:
        from knhk.ops.telemetry.selfcheck import registry

        reg = registry()
        self.index = metric_index(reg) if reg is not None else {}
        self.resource = resource
        self.exporter = exporter
        self.interval_s = interval_s
        self.start_ns = time.time_ns()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="knhk-otlp-metrics", daemon=True)

    @classmethod
    def start(cls, resource: Resource, *, console: bool = False) -> PrometheusBridge:
        if console:
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            exporter: Any = ConsoleMetricExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter()
        interval = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000")) / 1000
        bridge = cls(resource, exporter, max(0.1, interval))
        bridge.thread.start()
        return bridge

    def export_once(self) -> None:
        self.exporter.export(to_metrics_data(_render(), self.resource, self.index, self.start_ns))

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                self.export_once()
            except Exception:
                log.exception("exporting metrics over OTLP failed")

    def shutdown(self) -> None:
        self.stop.set()
        try:
            self.export_once()
        except Exception:
            log.exception("the final OTLP metrics export failed")
        self.exporter.shutdown()
