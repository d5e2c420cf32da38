"""Background jobs inside the service, each under a database lease so that across every worker and replica
there is at most one running instance:

* a cycle per sector every ``cycle_interval_s`` (due when the sector's last stored cycle started that long
  ago; the cycle itself holds the sector's cycle lease);
* a full ledger verification every ``verify_interval_s``, setting ``knhk_receipt_chain_valid{log}``;
* a checkpoint of each log every ``checkpoint_interval_s`` when it has grown;
* hourly, the observation partitions of this month and the next ``partitions_ahead`` (knhk.observations.partitions);
* the per-minute flush of aggregated ingest and authentication-failure audit entries, and the pool/tree-size/
  outbox gauges.

Starting the scheduler also starts the sequencer's outbox drain (every ``outbox_drain_interval_s``), so receipts
owed by a process that died between its commit and its drain are written by the survivors.
"""

from __future__ import annotations

import logging
import threading
import time

from knhk.errors import DependencyUnavailableError
from knhk.loop.coordinator import CycleRecord
from knhk.ops.telemetry.selfcheck import active_processor, check_exposition, hot_path_ticks
from knhk.service import metrics
from knhk.service.state import ServiceState

log = logging.getLogger("knhk.service")


def record_cycle_metrics(record: CycleRecord) -> None:
    metrics.CYCLE_DURATION.labels(record.sector, record.outcome).observe(record.duration_ms / 1000)
    for pattern in record.patterns:
        metrics.PATTERNS.labels(record.sector, pattern["name"]).inc()
    for p in record.proposals:
        metrics.PROPOSALS.labels(record.sector, p["outcome"]).inc()
        if p["outcome"] == "promoted":
            metrics.PROMOTIONS.labels(record.sector).inc()


def run_due_cycles(st: ServiceState) -> None:
    for record in st.app.run_due_cycles(st.settings.cycle_interval_s):
        record_cycle_metrics(record)


def verify_ledger(st: ServiceState) -> None:
    for name, report in st.app.verify_ledgers().items():
        metrics.CHAIN_VALID.labels(name).set(1 if report.ok else 0)
        metrics.CHAIN_VERIFIED_AT.labels(name).set(time.time())
        st.verify_results[name] = report.to_json()
        if not report.ok:
            log.error("ledger log %s FAILED verification: %s", name, report.first_failure)


def issue_checkpoints(st: ServiceState) -> None:
    st.app.issue_checkpoints(st.settings.checkpoint_interval_s)


def update_gauges(st: ServiceState) -> None:
    for state, n in st.app.pool_stats().items():
        metrics.POOL.labels(state).set(n)
    if st.app.database_dialect == "postgresql":
        metrics.POOL_MAX.set(st.settings.db_pool_max)
    for sector, schema in st.app.current_schemas().items():
        hot_path_ticks(sector, schema)
    for name, size in st.app.tree_sizes().items():
        metrics.TREE_SIZE.labels(name).set(size)
    metrics.OUTBOX_PENDING.set(st.app.outbox_pending())


def telemetry_check(st: ServiceState) -> None:
    """The telemetry self-check: this process's exposition (and its spans) against the registry."""
    check_exposition(metrics.render().decode(), active_processor())


def _loop(st: ServiceState) -> None:
    s = st.settings
    last = {"cycle": 0.0, "verify": 0.0, "checkpoint": 0.0, "minute": 0.0, "auth": 0.0, "gauges": 0.0,
            "telemetry": 0.0, "partitions": 0.0}
    jobs = [("cycle", s.cycle_interval_s, run_due_cycles), ("verify", s.verify_interval_s, verify_ledger),
            ("checkpoint", s.checkpoint_interval_s, issue_checkpoints),
            ("minute", 10.0, lambda st: st.ingest_audit.flush()), ("auth", 10.0, lambda st: st.app.auth_audit.flush()),
            ("partitions", 3600.0, lambda st: st.app.ensure_partitions()),
            ("gauges", 5.0, update_gauges), ("telemetry", s.telemetry_check_interval_s, telemetry_check)]
    while not st.stop.is_set():
        now = time.monotonic()
        for name, every, job in jobs:
            if every and now - last[name] >= min(every, 5.0 if name == "cycle" else every):
                last[name] = now
                try:
                    job(st)
                except DependencyUnavailableError as exc:  # an outage: one line, no traceback (it is expected)
                    log.warning("background job %s skipped: %s", name, exc.message)
                except Exception:
                    log.exception("background job %s failed", name)
        st.stop.wait(1.0)


def start(st: ServiceState) -> None:
    st.app.start_outbox_drain()
    thread = threading.Thread(target=_loop, args=(st,), name="knhk-scheduler", daemon=True)
    thread.start()
    st.threads.append(thread)


def stop(st: ServiceState) -> None:
    st.stop.set()
    for t in st.threads:
        t.join(timeout=30)
    try:
        st.ingest_audit.flush(everything=True)
    except Exception:
        log.exception("flushing the ingest audit failed")
    try:
        st.app.auth_audit.flush(everything=True)
    except Exception:
        log.exception("flushing the authentication-failure audit failed")
