"""The small instrumentation API KNHK's modules call: spans (OpenTelemetry API) and the Prometheus metrics that
go with them, under the names declared in ``registry/``.

Tracing is off until :func:`install` is given a tracer provider (``knhk.ops.telemetry.setup`` does it from the
standard ``OTEL_*`` variables; the live check does it with in-memory exporters). While it is off every helper
costs one global read and no span object is made; the metrics are recorded either way.

Call sites stay one line: a decorator (``@traced_cycle``, ``@traced_validation``, ``@ledger_append``,
``@ledger_commit``, ``@ingest``, ``@db_call``) or a single call (:func:`phase`, :func:`run_stage`,
:func:`evaluate_guards`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Tracer, TracerProvider

from knhk import __version__
from knhk.ops.telemetry import metrics

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_NULL: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def install(provider: TracerProvider | None) -> None:
    """Send KNHK's spans to ``provider`` (None: tracing off)."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("knhk", __version__)


def provider() -> TracerProvider | None:
    """The tracer provider KNHK's spans go to (None while tracing is off)."""
    return _provider


def tracing() -> bool:
    return _tracer is not None


def span(name: str, attributes: dict[str, Any] | None = None, *, kind: SpanKind = SpanKind.INTERNAL,
         links: Sequence[Link] | None = None) -> AbstractContextManager[Span]:
    """A span made current for the ``with`` block (a shared no-op while tracing is off)."""
    tracer = _tracer
    if tracer is None:
        return _NULL
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes, links=links)


def span_context() -> trace.SpanContext | None:
    """The current span's context (to link a batch's work to the requests it serves), or None."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else None


# -- MAPE-K -------------------------------------------------------------------------------------------------
class _Cycle:
    """The phases of one running cycle: each :func:`phase` call ends the previous phase and starts the next."""

    def __init__(self, sector: str) -> None:
        self.sector = sector
        self.cycle_id = ""
        self.phase: str | None = None
        self.started = 0.0
        self.span: Span | None = None
        self.token: object | None = None

    def enter(self, name: str, cycle_id: str) -> None:
        self.end()
        self.cycle_id = cycle_id
        self.phase, self.started = name, time.perf_counter()
        tracer = _tracer
        if tracer is not None:
            self.span = tracer.start_span(f"knhk.mape_k.{name}", attributes={
                "knhk.sector": self.sector, "knhk.cycle.id": cycle_id, "knhk.mape_k.phase": name})
            self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def end(self) -> None:
        if self.phase is None:
            return
        metrics.PHASE_DURATION.labels(self.sector, self.phase).observe(time.perf_counter() - self.started)
        self.phase = None
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]
            self.token = None
        if self.span is not None:
            self.span.end()
            self.span = None


_cycle: ContextVar[_Cycle | None] = ContextVar("knhk_cycle", default=None)


def traced_cycle(fn: F) -> F:
    """Decorates ``Coordinator.run_cycle(self, sector)``: the cycle span, its outcome, and clean phase ends."""

    @functools.wraps(fn)
    def wrapper(self: Any, sector: str, *args: Any, **kwargs: Any) -> Any:
        track = _Cycle(sector)
        token = _cycle.set(track)
        try:
            with span("knhk.mape_k.cycle", {"knhk.sector": sector}) as sp:
                try:
                    record = fn(self, sector, *args, **kwargs)
                except BaseException:
                    sp.set_attributes({"knhk.cycle.id": track.cycle_id, "knhk.cycle.outcome": "failed"})
                    raise
                finally:
                    track.end()
                sp.set_attributes({"knhk.cycle.id": record.id, "knhk.cycle.outcome": record.outcome,
                                   "knhk.cycle.patterns": len(record.patterns),
                                   "knhk.cycle.promotions": int(record.counts.get("promotions", 0))})
                return record
        finally:
            _cycle.reset(token)

    return wrapper  # type: ignore[return-value]


def phase(name: str, cycle_id: str) -> None:
    """Mark the start of MAPE-K phase ``name`` of the running cycle (ends the previous phase)."""
    track = _cycle.get()
    if track is not None:
        track.enter(name, cycle_id)


# -- validation ---------------------------------------------------------------------------------------------
def traced_validation(fn: F) -> F:
    """Decorates ``validate(inp)``: the pipeline span and ``knhk_validation_duration_seconds``."""

    @functools.wraps(fn)
    def wrapper(inp: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        with span("knhk.validation.validate", {"knhk.proposal.id": inp.proposal_id,
                                               "knhk.sector": inp.sector}) as sp:
            report = fn(inp, *args, **kwargs)
            sp.set_attribute("knhk.validation.outcome", report.outcome)
            if report.failed_stage is not None:
                sp.set_attribute("knhk.validation.failed_stage", report.failed_stage)
        metrics.VALIDATION_DURATION.labels(inp.sector, report.outcome).observe(time.perf_counter() - started)
        return report

    return wrapper  # type: ignore[return-value]


def run_stage(name: str, fn: Callable[[], T]) -> T:
    """Run one validation stage inside its span; record ``knhk_validation_stage_duration_seconds``."""
    started = time.perf_counter()
    passed = False
    try:
        with span("knhk.validation.stage", {"knhk.validation.stage": name}) as sp:
            try:
                result = fn()
                passed = bool(getattr(result, "passed", False))
            finally:
                sp.set_attribute("knhk.validation.passed", passed)
        return result
    finally:
        metrics.STAGE_DURATION.labels(name, "passed" if passed else "failed").observe(time.perf_counter() - started)


# -- hot-path guards ----------------------------------------------------------------------------------------
def evaluate_guards(evaluate: Callable[[Any, Any], list[Any]], observations: list[Any], schema: Any,
                    sector: str) -> list[Any]:
    """``evaluate(observations, schema)`` timed and counted, in a span with one event per violation."""
    ticks = 0
    if schema is not None:
        ticks = max((schema.hot_path_ticks(t) for t in {o.event_type for o in observations}), default=0)
    with span("knhk.guard.evaluate", {"knhk.sector": sector, "knhk.guard.observations": len(observations),
                                      "knhk.guard.ticks": ticks}) as sp:
        started = time.perf_counter()
        found = evaluate(observations, schema)
        metrics.GUARD_EVALUATION.labels(sector).observe(time.perf_counter() - started)
        sp.set_attribute("knhk.guard.violations", len(found))
        for v in found:
            metrics.GUARD_VIOLATIONS.labels(sector, v.kind).inc()
            if _tracer is not None:
                sp.add_event("knhk.guard.violated", {"knhk.guard.id": v.guard_id, "knhk.guard.kind": v.kind,
                                                     "knhk.observation.id": v.observation_id,
                                                     "knhk.observation.event_type": v.event_type})
    metrics.GUARD_OBSERVATIONS.labels(sector).inc(len(observations))
    return found


# -- ingest -------------------------------------------------------------------------------------------------
def ingest(mode: str) -> Callable[[F], F]:
    """Decorates an ingest step whose first argument is the list of submitted observations."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, items: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return fn(self, items, *args, **kwargs)
            with span("knhk.ingest", {"knhk.ingest.mode": mode, "knhk.ingest.observations": len(items)}) as sp:
                result = fn(self, items, *args, **kwargs)
                if isinstance(result, list):
                    sp.set_attribute("knhk.ingest.stored", sum(1 for r in result if not r.duplicate))
                return result

        return wrapper  # type: ignore[return-value]

    return deco


# -- the ledger ---------------------------------------------------------------------------------------------
def ledger_append(fn: F) -> F:
    """Decorates ``Sequencer.append(draft)`` / ``append_many(drafts)``: the appender's wait for durability."""

    @functools.wraps(fn)
    def wrapper(self: Any, drafts: Any, *args: Any, **kwargs: Any) -> Any:
        if _tracer is None:
            return fn(self, drafts, *args, **kwargs)
        many = isinstance(drafts, list | tuple)
        first = (drafts[0] if drafts else None) if many else drafts
        attrs = {"knhk.ledger.log": first.log if first is not None else "receipts",
                 "knhk.ledger.entries": len(drafts) if many else 1}
        with span("knhk.ledger.append", attrs):
            return fn(self, drafts, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def ledger_commit(fn: F) -> F:
    """Decorates ``Sequencer._commit(batch)``: one group commit, linked to the appends it serves."""

    @functools.wraps(fn)
    def wrapper(self: Any, batch: list[Any], *args: Any, **kwargs: Any) -> Any:
        entries = sum(len(item.drafts) for item in batch)
        started = time.perf_counter()
        if _tracer is None:
            result = fn(self, batch, *args, **kwargs)
        else:
            links = [Link(item.ctx) for item in batch if getattr(item, "ctx", None) is not None]
            with span("knhk.ledger.commit", {"knhk.ledger.entries": entries, "knhk.ledger.requests": len(batch)},
                      links=links):
                result = fn(self, batch, *args, **kwargs)
        metrics.LEDGER_COMMIT_DURATION.observe(time.perf_counter() - started)
        metrics.LEDGER_COMMIT_ENTRIES.observe(entries)
        return result

    return wrapper  # type: ignore[return-value]


# -- database calls -----------------------------------------------------------------------------------------
def _operation(sql: str) -> str:
    head = sql.lstrip().split(None, 1)
    return head[0].upper() if head else "SQL"


def db_call(fn: F) -> F:
    """Decorates a connection method taking the statement first: one client span per statement."""

    @functools.wraps(fn)
    def wrapper(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if _tracer is None:
            return fn(self, sql, *args, **kwargs)
        op = _operation(sql)
        with span(op, {"db.system.name": self.dialect, "db.operation.name": op, "db.query.text": sql[:2000]},
                  kind=SpanKind.CLIENT):
            return fn(self, sql, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def db_bulk(fn: F) -> F:
    """Decorates ``insert_rows(table, columns, rows)``: COPY on PostgreSQL, an INSERT batch on SQLite."""

    @functools.wraps(fn)
    def wrapper(self: Any, table: str, columns: Sequence[str], rows: Sequence[Any], *args: Any, **kw: Any) -> Any:
        if _tracer is None:
            return fn(self, table, columns, rows, *args, **kw)
        op = "COPY" if self.dialect == "postgresql" else "INSERT"
        text = f"{op} {table} ({', '.join(columns)})" + (" FROM STDIN" if op == "COPY" else " VALUES (…)")
        with span(op, {"db.system.name": self.dialect, "db.operation.name": op, "db.query.text": text},
                  kind=SpanKind.CLIENT):
            return fn(self, table, columns, rows, *args, **kw)

    return wrapper  # type: ignore[return-value]


@contextmanager
def detached() -> Iterator[None]:
    """Run a block outside any current span (e.g. background jobs that must not join a request's trace)."""
    token = otel_context.attach(otel_context.Context())
    try:
        yield
    finally:
        otel_context.detach(token)


def ids_of_current() -> tuple[str, str] | None:
    """(trace_id, span_id) in W3C hex of the current span, or None."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


__all__ = ["db_bulk", "db_call", "detached", "evaluate_guards", "ids_of_current", "ingest", "install",
           "ledger_append", "ledger_commit", "phase", "run_stage", "span", "span_context", "traced_cycle",
           "traced_validation", "tracing"]

