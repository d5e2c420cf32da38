"""KNHK's telemetry (SPEC §11 Observability): OpenTelemetry spans under the names of the registry in
``registry/``, the Prometheus metrics that go with them, the SDK set-up from ``OTEL_*`` variables, and the
checker behind ``knhk telemetry check``.

* :mod:`.spans` — the one-line instrumentation helpers the product's modules call;
* :mod:`.metrics` — Prometheus series recorded by those helpers;
* :mod:`.setup` — OTLP (HTTP/protobuf) export configured by the standard environment variables, off by default;
* :mod:`.registry`, :mod:`.conformance`, :mod:`.capture` — the static and live checks (the live scenario drives
  the HTTP face, so it lives there: :mod:`knhk.service.telemetry_scenario`, :mod:`knhk.service.telemetry_check`);
* :mod:`.selfcheck` — the running service's own conformance check (``knhk_telemetry_check_ok``).
"""

from __future__ import annotations

import os
from typing import Any

from knhk.ops.telemetry import spans
from knhk.ops.telemetry.spans import (
    db_bulk,
    db_call,
    evaluate_guards,
    ingest,
    ledger_append,
    ledger_commit,
    phase,
    run_stage,
    span,
    span_context,
    traced_cycle,
    traced_validation,
)


def instrument_app(app: Any) -> None:
    """Trace every HTTP request of ``app`` (W3C traceparent in, server span with the stable HTTP attributes),
    when tracing is on; otherwise leave the app untouched (no per-request cost)."""
    provider = spans.provider()
    if provider is None:
        return
    # The instrumentation emits the stable HTTP semantic conventions (those the registry declares) when asked.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])


__all__ = ["db_bulk", "db_call", "evaluate_guards", "ingest", "instrument_app", "ledger_append", "ledger_commit",
           "phase", "run_stage", "span", "span_context", "traced_cycle", "traced_validation"]
