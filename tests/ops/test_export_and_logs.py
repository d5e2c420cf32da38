"""OTLP export over HTTP/protobuf configured only by OTEL_* variables (a real `knhk serve` sending to a loopback
collector), nothing sent without them, JSON logs in UTC carrying trace ids, and the service's telemetry
self-check gauge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from knhk.ops.telemetry import metrics
from knhk.ops.telemetry.selfcheck import check_exposition
from knhk.service.metrics import render
from support.serve import serve

TRACE = "0af7651916cd43dd8448eb211c80319c"


class Collector:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


def _spans(collector: Collector) -> list[tuple[str, str]]:
    out = []
    for path, _, body in collector.requests:
        if path != "/v1/traces":
            continue
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                out.extend((s.name, s.trace_id.hex()) for s in ss.spans)
    return out


def _metrics(collector: Collector) -> dict[str, str]:
    out = {}
    for path, _, body in collector.requests:
        if path == "/v1/metrics":
            req = ExportMetricsServiceRequest()
            req.ParseFromString(body)
            out.update({m.name: m.unit for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics})
    return out


def test_serve_exports_spans_over_otlp_http_only_when_configured(collector: Collector, tmp_path: Path) -> None:
    env = {"KNHK_DATA_DIR": str(tmp_path / "on"), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
           "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_SERVICE_NAME": "knhk-test", "KNHK_CYCLE_INTERVAL_S": "0",
           "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    with serve(env) as (url, _):
        r = httpx.get(f"{url}/health", headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}, timeout=10)
        assert r.status_code == 200
        deadline = time.monotonic() + 20
        while (("GET /health", TRACE) not in _spans(collector) or "knhk.requests" not in _metrics(collector)) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    exported = _spans(collector)
    assert ("GET /health", TRACE) in exported, exported[:20]
    assert any(name == "SELECT" and trace == TRACE for name, trace in exported)  # the health check's query
    assert all(ctype == "application/x-protobuf" for _, ctype, _ in collector.requests)
    req = ExportTraceServiceRequest()
    req.ParseFromString(next(b for p, _, b in collector.requests if p == "/v1/traces"))
    resource = {a.key: a.value.string_value for a in req.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "knhk-test"
    exported_metrics = _metrics(collector)
    assert exported_metrics["knhk.requests"] == "{request}"  # the registry's name and unit
    assert exported_metrics["knhk.request.duration"] == "s"


def test_nothing_is_exported_without_otel_variables(collector: Collector, tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env = {"KNHK_DATA_DIR": str(tmp_path / "off"), "KNHK_CYCLE_INTERVAL_S": "0"}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(clean)
    try:
        with serve(env) as (url, _):
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
            time.sleep(1.0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert collector.requests == []


def test_grpc_protocol_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "KNHK_DATA_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    code = "from knhk.ops.telemetry.setup import configure_from_env\nconfigure_from_env()"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in done.stderr
    assert "http/protobuf" in done.stderr


LOG_SCRIPT = """
import logging
from opentelemetry.sdk.trace import TracerProvider
from knhk.ops.logs import configure_logging
from knhk.ops.telemetry import spans
configure_logging("INFO", "json")
spans.install(TracerProvider())
log = logging.getLogger("knhk.test")
log.info("outside")
with spans.span("knhk.ingest", {"knhk.ingest.mode": "batch", "knhk.ingest.observations": 1}) as s:
    log.warning("inside %s", "a span", extra={"sector": "finance"})
    print(format(s.get_span_context().trace_id, "032x"), format(s.get_span_context().span_id, "016x"))
"""


def test_json_logs_are_utc_under_tokyo_and_carry_trace_ids() -> None:
    env = {**os.environ, "TZ": "Asia/Tokyo"}
    done = subprocess.run([sys.executable, "-c", LOG_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    trace_id, span_id = done.stdout.split()
    outside, inside = (json.loads(line) for line in done.stderr.strip().splitlines())
    for line in (outside, inside):
        ts = datetime.fromisoformat(line["ts"])
        assert ts.utcoffset() is not None
        assert ts.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - ts).total_seconds()) < 120  # UTC, not Tokyo time labelled UTC
    assert "trace_id" not in outside
    assert inside["trace_id"] == trace_id
    assert inside["span_id"] == span_id
    assert inside["level"] == "warning"
    assert inside["message"] == "inside a span"
    assert inside["sector"] == "finance"


def test_self_check_gauge_is_one_for_the_real_exposition_and_zero_for_an_undeclared_series() -> None:
    assert check_exposition(render().decode()) is True
    assert metrics.TELEMETRY_OK._value.get() == 1
    before = metrics.TELEMETRY_VIOLATIONS.labels("metric")._value.get()
    rogue = render().decode() + "# HELP knhk_rogue_total x\n# TYPE knhk_rogue_total counter\nknhk_rogue_total 1.0\n"
    assert check_exposition(rogue) is False
    assert metrics.TELEMETRY_OK._value.get() == 0
    assert metrics.TELEMETRY_VIOLATIONS.labels("metric")._value.get() == before + 1
    assert check_exposition(render().decode()) is True  # not latched: the next clean run sets it back
