"""Ingest feeds the engine live; after a restart, priming from stored observations rebuilds the same windows
(both backends)."""

from __future__ import annotations

from typing import Any

from detection_support import NOW, US, schema

from knhk.app.runtime import Runtime
from knhk.detection.engine import DetectionEngine
from knhk.observations.ingest import Ingestor
from knhk.observations.reader import ObservationReader
from knhk.ops.clock import ManualClock, format_rfc3339


def raw(i: int, event_type: str, age_s: float, value: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"o-{i}", "event_type": event_type, "sector": "finance",
            "timestamp": format_rfc3339(NOW - round(age_s * US)), "value": value}


def test_priming_from_the_store_reproduces_live_detection(runtime: Runtime) -> None:
    clock = ManualClock(NOW)
    live = DetectionEngine(clock)
    current = schema()
    ingestor = Ingestor(runtime.db, runtime.ledger, lambda s: current, clock, on_ingested=live.observe)
    batch = [raw(i, "payment.created", i * 0.2, {"transaction_amount": i}) for i in range(150)]
    batch += [raw(500 + i, "payment.error", i, {"code": "E"}) for i in range(20)]
    batch += [raw(900 + i, "refund.created", i * 3, {"amount": i, "reason": "dup"}) for i in range(15)]
    ingestor.ingest_batch(batch)
    clock.advance(4)
    expected = live.detect("finance", current)
    assert {p.name for p in expected.patterns} == {"high_frequency:payment.created", "error_spike",
                                                   "schema_drift:refund.created"}

    restarted = DetectionEngine(clock)
    restarted.prime(ObservationReader(runtime.db).since(clock.now_us() - 300 * US, page=40))
    assert restarted.detect("finance", current) == expected
