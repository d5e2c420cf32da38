"""OpenTelemetry SDK set-up from the standard ``OTEL_*`` environment variables (off by default).

Nothing is exported unless the environment asks for it, signal by signal:

* traces when ``OTEL_TRACES_EXPORTER`` is ``otlp`` or ``console``, or when it is unset and
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set;
* logs (the ``knhk`` loggers' records) likewise with ``OTEL_LOGS_EXPORTER`` / ``…_LOGS_ENDPOINT``;
* metrics (the Prometheus series of ``/metrics``, see :mod:`knhk.ops.telemetry.otlp_metrics`) likewise with
  ``OTEL_METRICS_EXPORTER`` / ``…_METRICS_ENDPOINT``.

``OTEL_SDK_DISABLED=true`` turns everything off. The exporters speak OTLP over HTTP/protobuf
(``OTEL_EXPORTER_OTLP_PROTOCOL`` must be ``http/protobuf``, its default) and read every other OTLP setting
(headers, timeout, compression, certificates) from the environment themselves; the tracer provider reads
``OTEL_TRACES_SAMPLER``; the resource is ``service.name=knhk`` and ``service.version`` unless
``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` say otherwise; propagation is W3C trace context and
baggage unless ``OTEL_PROPAGATORS`` says otherwise.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from knhk import __version__
from knhk.errors import ConfigurationError
from knhk.ops.telemetry import spans

log = logging.getLogger("knhk.telemetry")

_SIGNALS = ("traces", "metrics", "logs")


@dataclass
class Telemetry:
    """What :func:`configure_from_env` switched on (so it can be flushed and shut down)."""

    tracer_provider: Any = None
    logger_provider: Any = None
    metrics_bridge: Any = None
    handlers: list[logging.Handler] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return any(x is not None for x in (self.tracer_provider, self.logger_provider, self.metrics_bridge))


_state: Telemetry | None = None
_lock = threading.Lock()


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def exporter_for(signal: str) -> str | None:
    """``otlp``, ``console`` or None (off) for one signal, from the environment."""
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return None
    chosen = _env(f"OTEL_{signal.upper()}_EXPORTER").lower()
    if chosen:
        if chosen == "none":
            return None
        if chosen not in ("otlp", "console"):
            raise ConfigurationError(f"OTEL_{signal.upper()}_EXPORTER={chosen!r}: KNHK exports otlp, console or none")
        return chosen
    if _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"):
        return "otlp"
    return None


def _check_protocol(signal: str) -> None:
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = _env(name)
        if value and value != "http/protobuf":
            raise ConfigurationError(f"{name}={value!r}: KNHK's OTLP exporters speak http/protobuf only")


def resource() -> Resource:
    """KNHK's resource; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES take precedence."""
    return Resource.create({"service.name": "knhk", "service.version": __version__}).merge(
        OTELResourceDetector().detect())


def configure_from_env() -> Telemetry:
    """Set up the SDK as the environment asks (idempotent; a second call returns the first result)."""
    global _state
    with _lock:
        if _state is not None:
            return _state
        state = Telemetry()
        kinds = {s: exporter_for(s) for s in _SIGNALS}
        for s, kind in kinds.items():
            if kind == "otlp":
                _check_protocol(s)
        res = resource()
        if kinds["traces"] is not None:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

            provider = TracerProvider(resource=res)
            if kinds["traces"] == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            else:
                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            from knhk.ops.telemetry.selfcheck import ConformanceProcessor

            provider.add_span_processor(ConformanceProcessor.from_default_registry())
            trace.set_tracer_provider(provider)
            spans.install(provider)
            state.tracer_provider = provider
        if kinds["logs"] is not None:
            from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogExporter

            lp = LoggerProvider(resource=res)
            if kinds["logs"] == "otlp":
                from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

                lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
            else:
                lp.add_log_record_processor(BatchLogRecordProcessor(ConsoleLogExporter()))
            handler = LoggingHandler(logger_provider=lp)
            logging.getLogger("knhk").addHandler(handler)
            state.handlers.append(handler)
            state.logger_provider = lp
        if kinds["metrics"] is not None:
            from knhk.ops.telemetry.otlp_metrics import PrometheusBridge

            state.metrics_bridge = PrometheusBridge.start(res, console=kinds["metrics"] == "console")
        if state.enabled:
            atexit.register(shutdown)
            log.info("OpenTelemetry export on: traces=%s logs=%s metrics=%s", kinds["traces"], kinds["logs"],
                     kinds["metrics"])
        _state = state
        return state


def shutdown() -> None:
    """Flush and stop what :func:`configure_from_env` started (idempotent)."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    for handler in state.handlers:
        logging.getLogger("knhk").removeHandler(handler)
    if state.metrics_bridge is not None:
        state.metrics_bridge.shutdown()
    if state.logger_provider is not None:
        state.logger_provider.shutdown()
    if state.tracer_provider is not None:
        spans.install(None)
        state.tracer_provider.shutdown()
