"""Turning captured telemetry into samples: SDK spans and a Prometheus exposition into the checker's neutral
form (:mod:`knhk.ops.telemetry.conformance`), and both into Weaver's JSON sample format, so that the same
capture can be replayed through the real tool elsewhere:
``weaver registry live-check -r registry --input-source samples.json --input-format json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from knhk.ops.telemetry.conformance import MetricSample, SpanSample, metric_index
from knhk.ops.telemetry.registry import Registry

_KINDS = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}


def families_from_text(text: str) -> list[MetricSample]:
    """Metric families of a Prometheus text exposition (counter names keep their ``_total``)."""
    out = []
    for fam in text_string_to_metric_families(text):
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        out.append(MetricSample(name, fam.type, [(s.name, dict(s.labels), float(s.value)) for s in fam.samples]))
    return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def span_samples(spans: Iterable[Any]) -> list[SpanSample]:
    """SDK ``ReadableSpan`` objects as samples."""
    out = []
    for s in spans:
        kind = _KINDS.get(int(s.kind.value), "internal")
        events = [(e.name, {k: _plain(v) for k, v in (e.attributes or {}).items()}) for e in s.events]
        resource = {k: _plain(v) for k, v in s.resource.attributes.items()} if s.resource else {}
        out.append(SpanSample(s.name, kind, {k: _plain(v) for k, v in (s.attributes or {}).items()}, events,
                              resource, len(s.links)))
    return out


def _attrs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _data_points(family: MetricSample, instrument: str) -> list[dict[str, Any]]:
    if instrument != "histogram":
        return [{"attributes": _attrs(labels), "value": value} for _, labels, value in family.points]
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample_name, labels, value in family.points:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        point = series.setdefault(key, {"buckets": [], "count": 0, "sum": 0.0})
        if sample_name.endswith("_bucket"):
            point["buckets"].append((float(labels["le"]), value))
        elif sample_name.endswith("_count"):
            point["count"] = int(value)
        elif sample_name.endswith("_sum"):
            point["sum"] = value
    out = []
    for key, point in series.items():
        cumulative = sorted(point["buckets"])
        counts, previous = [], 0.0
        for _, c in cumulative:
            counts.append(int(c - previous))
            previous = c
        out.append({"attributes": _attrs(dict(key)), "bucket_counts": counts,
                    "explicit_bounds": [b for b, _ in cumulative if b != float("inf")],
                    "count": point["count"], "sum": point["sum"]})
    return out


def weaver_samples(registry: Registry, spans: Sequence[SpanSample], families: Sequence[MetricSample]) -> list[Any]:
    """The capture as a list of Weaver live-check JSON samples (resource, span, metric)."""
    out: list[Any] = []
    resource = next((s.resource for s in spans if s.resource), None)
    if resource:
        out.append({"resource": {"attributes": _attrs(resource)}})
    for s in spans:
        out.append({"span": {"name": s.name, "kind": s.kind, "attributes": _attrs(s.attributes),
                             "span_events": [{"name": n, "attributes": _attrs(a)} for n, a in s.events],
                             "span_links": [{"attributes": []} for _ in range(s.links)]}})
    index = metric_index(registry)
    for fam in families:
        if not fam.points:
            continue
        signal = index.get(fam.name)
        instrument = signal.instrument if signal is not None else {"counter": "counter",
                                                                   "histogram": "histogram"}.get(fam.type, "gauge")
        out.append({"metric": {"name": signal.metric_name if signal is not None else fam.name,
                               "instrument": instrument, "unit": signal.unit if signal is not None else "",
                               "data_points": _data_points(fam, str(instrument))}})
    return out
