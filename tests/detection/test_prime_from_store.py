"""Ingest feeds the engine live; after a restart, priming from stored observations rebuilds the same windows
(both backends)."""

from __future__ import annotations

from typing import Any

import pytest
from detection_support import NOW, US, schema

from knhk.app import runtime as runtime_module
from knhk.app.runtime import Runtime
from knhk.config import Settings
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


def test_first_catch_up_feeds_the_window_page_by_page(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that is not subscribed catches a sector up from the store in pages (never the whole window as
    one list) and ends with the same windows as one that saw every observation live."""
    clock = ManualClock(NOW)
    monkeypatch.setattr(runtime_module, "_PRIME_PAGE", 7)
    with Runtime.open(settings, clock=clock, subscribe_engine=True) as live:
        batch = [raw(i, "payment.created", i * 0.2, {"transaction_amount": i}) for i in range(150)]
        batch += [raw(500 + i, "payment.error", i, {"code": "E"}) for i in range(20)]
        live.ingestor.ingest_batch(batch)
        expected = live.engine.detect("finance", live.registry.current_schema("finance"))
    fed_sizes: list[int] = []
    with Runtime.open(settings, clock=clock, subscribe_engine=False) as restarted:
        observe = restarted.engine.observe
        monkeypatch.setattr(restarted.engine, "observe", lambda obs: (fed_sizes.append(len(list(obs))), observe(obs)))
        assert restarted.catch_up("finance") == 170
        assert max(fed_sizes) <= 7
        assert restarted.catch_up("finance") == 0  # the cursor is past everything fed
        got = restarted.engine.detect("finance", restarted.registry.current_schema("finance"))
    assert {p.name for p in got.patterns} == {p.name for p in expected.patterns}
    assert got.patterns == expected.patterns
