"""Prometheus metrics recorded by the telemetry helpers (loop phases, validation, guards, ledger commits, the
telemetry self-check, build info). Every series here is declared in ``registry/metrics.yaml``; the service's
own HTTP, ingest and ledger-size metrics live in :mod:`knhk.service.metrics`. Both register in the default
prometheus-client registry, so ``/metrics`` (and its multiprocess aggregation) exposes them together.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import multiprocess as prom_multiprocess

from knhk import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render() -> bytes:
    """The process's exposition text (``/metrics``), aggregated across workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


# ``*_created`` series carry nothing an operator or rule uses; leave them out of the exposition.
disable_created_metrics()  # type: ignore[no-untyped-call]

_FAST = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_WARM = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PHASE_DURATION = Histogram("knhk_cycle_phase_duration_seconds", "Duration of each MAPE-K phase, by sector and phase.",
                           ["sector", "phase"], buckets=_WARM)
VALIDATION_DURATION = Histogram("knhk_validation_duration_seconds",
                                "Validation pipeline duration for one proposal, by sector and outcome.",
                                ["sector", "outcome"], buckets=_WARM)
STAGE_DURATION = Histogram("knhk_validation_stage_duration_seconds",
                           "Duration of one validation stage, by stage and status.", ["stage", "status"],
                           buckets=_WARM)
GUARD_EVALUATION = Histogram("knhk_guard_evaluation_seconds",
                             "Wall time of one hot-path guard evaluation (one sector's new observations of one "
                             "commit), by sector.", ["sector"], buckets=_FAST)
GUARD_OBSERVATIONS = Counter("knhk_guard_evaluated_observations_total",
                             "Observations whose hot-path guards were evaluated, by sector.", ["sector"])
GUARD_VIOLATIONS = Counter("knhk_guard_violations_total", "Hot-path guard violations, by sector and guard kind.",
                           ["sector", "kind"])
HOT_PATH_TICKS = Gauge("knhk_hot_path_ticks", "Largest declared hot-path guard cost of any event type in the "
                       "sector's current snapshot, in ticks (budget 8).", ["sector"], multiprocess_mode="max")
LEDGER_COMMIT_DURATION = Histogram("knhk_ledger_commit_duration_seconds",
                                   "Duration of one ledger group commit.", buckets=_WARM)
LEDGER_COMMIT_ENTRIES = Histogram("knhk_ledger_commit_entries", "Entries per ledger group commit.",
                                  buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000))
TELEMETRY_OK = Gauge("knhk_telemetry_check_ok", "1 when the last telemetry self-check passed, else 0.",
                     multiprocess_mode="min")
TELEMETRY_CHECKED_AT = Gauge("knhk_telemetry_check_timestamp_seconds", "Unix time of the last telemetry self-check.",
                             multiprocess_mode="max")
TELEMETRY_VIOLATIONS = Counter("knhk_telemetry_violations_total",
                               "Telemetry found not to conform to the registry, by signal type.", ["signal_type"])
CACHE_REQUESTS = Counter("knhk_cache_requests_total",
                         "Lookups of derived results, by cache layer (l1 in-process, l2 Redis, l3 the database) and "
                         "result (hit, miss, error, load).", ["layer", "result"])
BUILD_INFO = Gauge("knhk_build_info", "Always 1; the version label names the running KNHK version.", ["version"],
                   multiprocess_mode="max")

BUILD_INFO.labels(__version__).set(1)
for _signal in ("span", "metric"):
    TELEMETRY_VIOLATIONS.labels(_signal)
BREAKER_STATE = Gauge("knhk_circuit_breaker_state",
                      "State of the circuit breaker of each dependency: 0 closed, 1 open, 2 half-open.",
                      ["dependency"], multiprocess_mode="max")
STALE_READS = Counter("knhk_stale_reads_total", "Reads answered from the last-seen fallback while the database could "
                      "not answer (each marked X-KNHK-Stale), by kind of read.", ["kind"])
RETRIES = Counter("knhk_retries_total", "Retries of idempotent operations after a transient failure, by operation.",
                  ["operation"])
LLM_PLANS = Counter("knhk_llm_plans_total", "Patterns the LLM proposer was asked about, by sector and outcome (ok, or "
                    "the reason it fell back to the rule proposer).", ["sector", "outcome"])
