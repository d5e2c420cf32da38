"""Benchmark (SPEC §12): detection over a 100k-event window, and batch ingest throughput.

1. One sector, 100,000 observations spread over the last 60 s with a realistic type mix (payments, logins,
   a few errors, an undeclared type and an undeclared field). Between detections, new traffic keeps arriving
   (500 observations per 300 ms step) so every ``detect()`` also evicts; ≥ 200 timed calls give p50/p95/p99
   (target p95 < 10 ms). The same run times the naive from-scratch rescan of the window
   (:func:`knhk.detection.reference.detect_from_scratch`) as the baseline and prints the ratio.
2. Ingest of 1,000-observation batches through :class:`knhk.observations.ingest.Ingestor` (parse,
   conformance, idempotency lookup, one transaction with executemany, guards) on SQLite and, when reachable,
   on PostgreSQL at ``KNHK_BENCH_PG_ADMIN_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres) in a
   scratch database that is dropped afterwards.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.detection.engine import DetectionEngine
from knhk.detection.pattern import DetectorConfig
from knhk.detection.reference import detect_from_scratch
from knhk.observations.ingest import Ingestor
from knhk.observations.model import Observation, parse_observation
from knhk.ontology.schema import (
    XSD_DECIMAL,
    XSD_STRING,
    EventTypeSpec,
    FieldSpec,
    GuardSpec,
    SectorSchema,
)
from knhk.ops.clock import ManualClock, format_rfc3339

PG_ADMIN_URL = os.environ.get("KNHK_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NS = "urn:bench:finance#"
START = 1_714_564_800_000_000
WINDOW = 100_000
STEP_EVENTS = 500
STEP_US = 300_000
CALLS = 250
BASELINE_CALLS = 5
BATCH = 1000
BATCHES = 30


def finance_schema() -> SectorSchema:
    def fields(**kinds: str) -> dict[str, FieldSpec]:
        return {name: FieldSpec(name, NS + name, dt) for name, dt in kinds.items()}

    return SectorSchema("finance", "bench", {
        "payment.created": EventTypeSpec("payment.created", NS + "Payment",
                                         fields(transaction_amount=XSD_DECIMAL, currency=XSD_STRING)),
        "user.login": EventTypeSpec("user.login", NS + "Login", fields(user=XSD_STRING)),
        "payment.error": EventTypeSpec("payment.error", NS + "PaymentError", fields(code=XSD_STRING)),
    }, (GuardSpec("FIN-LIMIT-001", NS + "Limit", "max_value", "payment.created", "transaction_amount",
                  Decimal(1_000_000), ticks=2, criticality="critical"),))


def raw_event(rng: random.Random, n: int, ts_us: int) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.60:
        event_type, value = "payment.created", {"transaction_amount": round(rng.uniform(1, 5000), 2),
                                                "currency": rng.choice(["EUR", "USD", "GBP"])}
    elif roll < 0.70:
        event_type, value = "payment.created", {"transaction_amount": rng.randint(1, 900),
                                                "currency": "EUR", "channel": rng.choice(["web", "app"])}
    elif roll < 0.95:
        event_type, value = "user.login", {"user": f"u{rng.randint(1, 5000)}"}
    elif roll < 0.98:
        event_type, value = "payment.error", {"code": rng.choice(["E_TIMEOUT", "E_DECLINED"])}
    else:
        event_type, value = "refund.created", {"amount": rng.randint(1, 300), "reason": "duplicate"}
    return {"id": f"obs-{n}", "event_type": event_type, "sector": "finance",
            "timestamp": format_rfc3339(ts_us), "value": value}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def bench_detection() -> None:
    rng = random.Random(7)
    schema = finance_schema()
    spacing = 60_000_000 // WINDOW
    events: list[Observation] = []
    for n in range(WINDOW):
        ts = START + n * spacing
        events.append(parse_observation(raw_event(rng, n, ts), received_us=ts))
    clock = ManualClock(START + WINDOW * spacing)
    engine = DetectionEngine(clock, default_config=DetectorConfig())
    began = time.perf_counter()
    engine.prime(events)
    prime_s = time.perf_counter() - began

    timings: list[float] = []
    patterns: list[str] = []
    n = WINDOW
    per_event = STEP_US // STEP_EVENTS
    for _ in range(CALLS):
        base = clock.now_us()
        fresh = [parse_observation(raw_event(rng, n + i, base + i * per_event), received_us=base)
                 for i in range(STEP_EVENTS)]
        n += STEP_EVENTS
        clock.set(base + STEP_US)
        engine.observe(fresh)
        events.extend(fresh)
        began = time.perf_counter()
        result = engine.detect("finance", schema)
        timings.append((time.perf_counter() - began) * 1000)
        patterns = [p.name for p in result.patterns]
    now = clock.now_us()
    in_window = [e for e in events if e.ts_us >= now - 300_000_000]
    print(f"detection: {WINDOW:,} events in the 60 s window, {len(in_window):,} in the 5 min drift window;"
          f" prime {prime_s * 1000:.0f} ms")
    print(f"detect() over {CALLS} calls: p50 {percentile(timings, 50):.3f} ms, p95 {percentile(timings, 95):.3f}"
          f" ms, p99 {percentile(timings, 99):.3f} ms (target p95 < 10 ms)")
    print(f"patterns: {', '.join(patterns)}")

    baseline: list[float] = []
    for _ in range(BASELINE_CALLS):
        began = time.perf_counter()
        detect_from_scratch("finance", in_window, schema, DetectorConfig(), now, monitored=True)
        baseline.append((time.perf_counter() - began) * 1000)
    naive = statistics.median(baseline)
    print(f"baseline (from-scratch rescan of the window, {BASELINE_CALLS} calls): median {naive:.1f} ms;"
          f" incremental p95 is {naive / percentile(timings, 95):.0f}x faster")


def bench_ingest(label: str, url: str, tmp: Path) -> None:
    settings = Settings(data_dir=tmp / label, database_url=url, db_pool_min=1, db_pool_max=4)
    rng = random.Random(11)
    with Runtime.open(settings) as runtime:
        clock = ManualClock(START)
        schema = finance_schema()
        ingestor = Ingestor(runtime.db, runtime.ledger, lambda s: schema if s == "finance" else None, clock)
        for keyed in (True, False):
            timings: list[float] = []
            n = 0
            for _ in range(BATCHES):
                batch = [raw_event(rng, n + i, clock.now_us()) for i in range(BATCH)]
                if not keyed:
                    for raw in batch:
                        del raw["id"]
                n += BATCH
                began = time.perf_counter()
                ingestor.ingest_batch(batch, client="bench")
                timings.append(time.perf_counter() - began)
                clock.advance(0.001)
                if keyed:
                    for raw in batch:
                        raw["id"] = f"{label}-{raw['id']}-{n}"
            rate = BATCH / statistics.median(timings)
            kind = "client ids (idempotency lookup)" if keyed else "server-assigned ids"
            print(f"ingest {label}: {BATCH}-observation batches, {kind}: median {statistics.median(timings) * 1000:.1f}"
                  f" ms/batch = {rate:,.0f} observations/s (p95 {percentile(timings, 95) * 1000:.1f} ms)")


def main() -> None:
    bench_detection()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bench_ingest("sqlite", f"sqlite:///{tmp / 'bench.db'}", tmp)
        try:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
                name = f"knhk_bench_{uuid.uuid4().hex[:10]}"
                conn.execute(f'CREATE DATABASE "{name}"')
        except Exception as exc:
            print(f"ingest postgresql: skipped, {PG_ADMIN_URL} is unreachable ({exc})")
            return
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        try:
            bench_ingest("postgresql", url, tmp)
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
