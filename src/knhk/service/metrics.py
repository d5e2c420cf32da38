"""Prometheus metrics of the service (SPEC §10 ``/metrics``), safe with several worker processes.

With more than one worker, set ``PROMETHEUS_MULTIPROC_DIR`` (``knhk serve`` does it): every process writes
its samples to files there and ``/metrics`` aggregates them (prometheus-client multiprocess mode; gauges
declare how they aggregate). With one process the default registry is used.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from knhk.ops.telemetry import textfile
from knhk.ops.telemetry.metrics import CONTENT_TYPE, render

__all__ = ["CONTENT_TYPE", "render"]  # with the series below: the exposition of the whole process


REQUESTS = Counter("knhk_requests_total", "HTTP requests by method, route template and status.",
                   ["method", "route", "status"])
REQUEST_DURATION = Histogram(
    "knhk_request_duration_seconds", "HTTP request duration by method and route template.", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
HTTP_TIMEOUTS = Counter("knhk_http_timeouts_total", "Connections closed by `knhk serve` for a client too slow: "
                        "phase head (no complete request head in time, idle ones included) or body (408).", ["phase"])
OBSERVATIONS = Counter("knhk_observations_ingested_total", "Observations stored, by sector.", ["sector"])
PATTERNS = Counter("knhk_patterns_detected_total", "Patterns detected, by sector and pattern.", ["sector", "pattern"])
PROPOSALS = Counter("knhk_proposals_total", "Proposals decided, by sector and outcome.", ["sector", "outcome"])
PROMOTIONS = Counter("knhk_snapshot_promotions_total", "Snapshot promotions, by sector.", ["sector"])
AUTH_FAILURES = Counter("knhk_auth_failures_total", "Failed authentications, by reason.", ["reason"])
RECEIPTS = Counter("knhk_receipts_appended_total", "Ledger entries appended by this service, by log.", ["log"])
TREE_SIZE = Gauge("knhk_ledger_tree_size", "Entries in each ledger log (Merkle tree size).", ["log"],
                  multiprocess_mode="max")
CHAIN_VALID = Gauge(*textfile.CHAIN_VALID, ["log"], multiprocess_mode="min")
CHAIN_VERIFIED_AT = Gauge(*textfile.CHAIN_VERIFIED_AT, ["log"], multiprocess_mode="max")
OUTBOX_PENDING = Gauge("knhk_outbox_pending", "Ledger entries owed in the transactional outbox, not written yet.",
                       multiprocess_mode="max")
POOL = Gauge("knhk_db_pool_connections", "Database pool connections by state.", ["state"],
             multiprocess_mode="livesum")
CYCLE_DURATION = Histogram("knhk_cycle_duration_seconds", "MAPE-K cycle duration by sector and outcome.",
                           ["sector", "outcome"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
POOL_MAX = Gauge("knhk_db_pool_connections_max", "The database pool's maximum size.", multiprocess_mode="livesum")
DEPENDENCY_UP = Gauge("knhk_dependency_up", "1 when the dependency answered its last health check.", ["dependency"],
                      multiprocess_mode="min")


