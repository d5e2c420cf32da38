"""The last-seen fallback (knhk.ops.stale): only a database outage falls back, only to an answer seen before,
and every fallback is marked for the request that got it."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from knhk.errors import CircuitOpenError, DependencyUnavailableError, NotFoundError
from knhk.ops.stale import LastSeen, tracking


def _down() -> str:
    raise DependencyUnavailableError("PostgreSQL is unavailable: connection refused")


def _stale_count(kind: str) -> float:
    return REGISTRY.get_sample_value("knhk_stale_reads_total", {"kind": kind}) or 0.0


def test_an_outage_serves_the_last_answer_marked_stale_and_counted() -> None:
    seen = LastSeen(10)
    before = _stale_count("receipt")
    with tracking() as marks:
        assert seen.read("receipt", "receipts/0", lambda: "entry 0") == "entry 0"
        assert marks == []
        assert _stale_count("receipt") == before  # a fresh answer is not counted
        assert seen.read("receipt", "receipts/0", _down) == "entry 0"
        assert marks == ["receipt"]
        assert _stale_count("receipt") == before + 1  # operators see stale serving in knhk_stale_reads_total
    with tracking() as marks, pytest.raises(DependencyUnavailableError):
        seen.read("receipt", "receipts/1", _down)  # never seen: the outage's error
    assert marks == []
    assert _stale_count("receipt") == before + 1


def test_other_errors_are_not_hidden_and_not_remembered() -> None:
    seen = LastSeen(10)
    seen.read("snapshot", "a", lambda: "A")

    def missing() -> str:
        raise NotFoundError("no snapshot has id a")

    with pytest.raises(NotFoundError):
        seen.read("snapshot", "a", missing)


def test_marks_reach_the_request_from_a_worker_thread_and_stay_per_request() -> None:
    import contextvars

    seen = LastSeen(10)
    seen.read("checkpoint", "audit", lambda: "cp")

    def open_breaker() -> str:
        raise CircuitOpenError("postgresql is unavailable", retry_after=3)

    with tracking() as marks:
        context = contextvars.copy_context()  # what a thread pool runs a synchronous route in
        worker = threading.Thread(target=context.run, args=(seen.read, "checkpoint", "audit", open_breaker))
        worker.start()
        worker.join()
        assert marks == ["checkpoint"]
    with tracking() as other:
        assert other == []


def test_zero_entries_disables_the_fallback() -> None:
    seen = LastSeen(0)
    seen.read("receipt", "r", lambda: "x")
    with pytest.raises(DependencyUnavailableError):
        seen.read("receipt", "r", _down)
