"""Ingest (SPEC §2) on both backends: atomic batches, idempotency, conflicts, conformance, guard receipts."""

from __future__ import annotations

from typing import Any

import pytest
from obs_support import finance_schema

from knhk.app.runtime import Runtime
from knhk.errors import ConflictError, InvalidInputError, PayloadTooLargeError, UsageError
from knhk.observations.ingest import Ingestor
from knhk.observations.model import Observation
from knhk.observations.reader import ObservationReader
from knhk.ontology.schema import SectorSchema
from knhk.ops.clock import ManualClock, format_rfc3339
from knhk.proof.canonical import check_canonical
from knhk.proof.evidence import SCHEME, evidence_root

T0 = 1_714_564_800_000_000
US = 1_000_000


class Harness:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = ManualClock(T0)
        self.schemas: dict[str, SectorSchema | None] = {"finance": finance_schema()}
        self.notified: list[list[Observation]] = []
        self.ingestor = Ingestor(runtime.db, runtime.ledger, self.schemas.get, self.clock,
                                 on_ingested=self.notified.append)
        self.reader = ObservationReader(runtime.db)

    def receipts(self, kind: str) -> list[Any]:
        return self.runtime.ledger.entries("receipts", kind=kind, limit=1000)


@pytest.fixture
def h(runtime: Runtime) -> Harness:
    return Harness(runtime)


def payment(i: int, amount: Any = 10, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": f"pay-{i}", "event_type": "payment.created", "sector": "finance",
                           "timestamp": format_rfc3339(T0), "value": {"transaction_amount": amount}}
    raw.update(extra)
    return raw


def test_single_observation_is_stored_with_its_conformance(h: Harness) -> None:
    result = h.ingestor.ingest({"event_type": "refund.created", "sector": "finance", "value": {"x": 1}},
                               client="svc-a")
    assert not result.duplicate
    stored = h.reader.get(result.observation.id)
    assert stored.seq == result.observation.seq
    assert stored.seq is not None
    assert (stored.conforming, stored.issues, stored.client, stored.ts_us) == (
        False, ("unknown_event_type",), "svc-a", T0)
    assert h.notified == [[result.observation]]
    assert result.to_json()["issues"] == ["unknown_event_type"]


def test_an_identical_resend_returns_the_stored_observation(h: Harness) -> None:
    first = h.ingestor.ingest(payment(1))
    h.clock.advance(120)  # a late retry: skew is judged for new observations only
    again = h.ingestor.ingest(payment(1))
    assert again.duplicate
    assert again.observation == first.observation
    assert h.reader.count() == 1
    assert h.notified == [[first.observation]]


def test_a_resend_without_timestamp_is_identical_too(h: Harness) -> None:
    raw = {"id": "hb-1", "event_type": "user.login", "sector": "finance"}
    first = h.ingestor.ingest(raw)
    h.clock.advance(30)
    again = h.ingestor.ingest(dict(raw))
    assert again.duplicate
    assert again.observation.ts_us == first.observation.ts_us == T0


def test_the_same_id_with_other_content_is_a_conflict_and_nothing_changes(h: Harness) -> None:
    h.ingestor.ingest(payment(1, 10))
    with pytest.raises(ConflictError, match="'pay-1' is already stored with different content"):
        h.ingestor.ingest(payment(1, 11))
    assert h.reader.get("pay-1").value == {"transaction_amount": 10}
    assert h.reader.count() == 1


def test_batch_of_1000_with_an_invalid_item_at_500_stores_nothing(h: Harness) -> None:
    batch = [payment(i) for i in range(1000)]
    batch[500] = payment(500, sector="Finance")
    with pytest.raises(InvalidInputError, match=r"^observation 500: sector") as info:
        h.ingestor.ingest_batch(batch)
    assert info.value.details["index"] == 500
    assert h.reader.count() == 0
    assert h.notified == []


def test_batch_with_a_conflict_against_stored_data_stores_nothing(h: Harness) -> None:
    h.ingestor.ingest(payment(7, 99))
    batch = [payment(i) for i in range(20)]
    with pytest.raises(ConflictError, match=r"^observation 7: id 'pay-7'"):
        h.ingestor.ingest_batch(batch)
    assert h.reader.count() == 1


def test_batch_with_a_skewed_item_stores_nothing_and_names_it(h: Harness) -> None:
    batch = [payment(i) for i in range(5)]
    batch[3]["timestamp"] = format_rfc3339(T0 + 61 * US)
    with pytest.raises(InvalidInputError, match=r"^observation 3: timestamp \S+ is 61 s ahead of the server.s clock"):
        h.ingestor.ingest_batch(batch)
    assert h.reader.count() == 0


def test_skewed_observations_are_flagged(h: Harness) -> None:
    results = h.ingestor.ingest_batch([
        payment(1, timestamp=format_rfc3339(T0 - 5 * US)),
        payment(2, timestamp=format_rfc3339(T0 - 5 * US - 1)),
        payment(3, timestamp=format_rfc3339(T0 + 60 * US)),
    ])
    assert [r.observation.skewed for r in results] == [False, True, True]
    assert [h.reader.get(f"pay-{i}").skewed for i in (1, 2, 3)] == [False, True, True]


def test_batch_duplicates_collapse_and_conflicting_repeats_fail(h: Harness) -> None:
    results = h.ingestor.ingest_batch([payment(1), payment(2), payment(1)])
    assert [r.duplicate for r in results] == [False, False, True]
    assert results[0].observation == results[2].observation
    assert h.reader.count() == 2
    with pytest.raises(ConflictError, match="observation 2: id 'pay-9' is also used by observation 0"):
        h.ingestor.ingest_batch([payment(9, 1), payment(10), payment(9, 2)])
    assert h.reader.count() == 2


def test_batch_results_are_in_input_order_and_mix_new_and_stored(h: Harness) -> None:
    h.ingestor.ingest(payment(2))
    results = h.ingestor.ingest_batch([payment(1), payment(2), payment(3)])
    assert [(r.observation.id, r.duplicate) for r in results] == [("pay-1", False), ("pay-2", True),
                                                                   ("pay-3", False)]
    assert [o.id for o in h.notified[-1]] == ["pay-1", "pay-3"]
    seqs = [r.observation.seq for r in results]
    assert all(s is not None for s in seqs)
    assert seqs[0] < seqs[2]


def test_batch_shape_and_size_limits(h: Harness) -> None:
    with pytest.raises(UsageError, match="JSON array"):
        h.ingestor.ingest_batch({"id": "x"})  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLargeError, match="at most 10000"):
        h.ingestor.ingest_batch([{}] * 10_001)
    with pytest.raises(UsageError, match="observation 1: an observation must be a JSON object"):
        h.ingestor.ingest_batch([payment(1), "text"])
    assert h.ingestor.ingest_batch([]) == []


def test_guard_violation_keeps_the_observation_and_writes_two_receipts(h: Harness) -> None:
    results = h.ingestor.ingest_batch([payment(1, 1_000_000), payment(2, 1_000_001)])
    assert next(r.violations for r in results) == ()
    violation = results[1].violations[0]
    assert (violation.guard_id, violation.value, violation.limit) == ("FIN-LIMIT-001", "1000001", "1000000")
    assert h.reader.count() == 2
    guard, = h.receipts("guard.violated")
    alert, = h.receipts("alert.raised")
    assert guard.fields["subject"] == "pay-2"
    assert guard.fields["evidence"] == ["pay-2"]
    assert guard.fields["outcome"] == "violated"
    assert guard.fields["sector"] == "finance"
    stored = h.reader.get("pay-2")
    assert guard.fields["data"] == {"guard_id": "FIN-LIMIT-001", "kind": "max_value",
                                    "field": "transaction_amount", "value": "1000001", "limit": "1000000",
                                    "event_type": "payment.created", "criticality": "critical",
                                    "evidence_count": 1, "evidence_truncated": False,
                                    "evidence_root": evidence_root([("pay-2", stored.content_hash)]),
                                    "evidence_scheme": SCHEME}
    assert "1000001" in guard.fields["reason"]
    assert "FIN-LIMIT-001" in guard.fields["reason"]
    assert alert.fields["data"]["level"] == "critical"
    assert alert.fields["subject"] == "pay-2"
    assert set(results[1].receipt_ids) == {guard.id, alert.id}
    check_canonical(guard.fields)
    assert h.runtime.ledger.verify("receipts").ok


def test_a_duplicate_does_not_raise_its_guard_receipts_again(h: Harness) -> None:
    h.ingestor.ingest(payment(1, 2_000_000))
    again = h.ingestor.ingest(payment(1, 2_000_000))
    assert again.duplicate
    assert again.violations == ()
    assert len(h.receipts("guard.violated")) == 1


def test_a_failing_subscriber_does_not_undo_the_ingest(runtime: Runtime) -> None:
    def broken(observations: list[Observation]) -> None:
        raise RuntimeError("subscriber down")

    ingestor = Ingestor(runtime.db, runtime.ledger, lambda s: finance_schema(), ManualClock(T0), on_ingested=broken)
    result = ingestor.ingest({"event_type": "e", "sector": "finance"})
    assert ObservationReader(runtime.db).get(result.observation.id).issues == ("unknown_event_type",)


def test_skew_without_a_client_id_is_rejected_before_anything_is_stored(h: Harness) -> None:
    raw = {"event_type": "user.login", "sector": "finance", "timestamp": format_rfc3339(T0 - 60 * US - 1)}
    with pytest.raises(InvalidInputError, match=r"^timestamp \S+ is 60.000001 s behind the server.s clock"):
        h.ingestor.ingest(raw)
    with pytest.raises(InvalidInputError, match=r"^observation 1: timestamp \S+ is 60.000001 s behind"):
        h.ingestor.ingest_batch([payment(1), raw])
    assert h.reader.count() == 0


def test_an_observation_of_a_sector_without_a_pack_is_refused_and_nothing_is_stored(runtime: Runtime) -> None:
    expected = "sector 'nope' has no installed sector pack; installed: finance, healthcare, logistics, manufacturing"
    with pytest.raises(InvalidInputError) as info:
        runtime.ingestor.ingest({"event_type": "e", "sector": "nope"})
    assert info.value.message == expected
    with pytest.raises(InvalidInputError, match=r"^observation 1: sector 'nope' has no installed sector pack"):
        runtime.ingestor.ingest_batch([{"event_type": "e", "sector": "finance"}, {"event_type": "e", "sector": "nope"}])
    assert runtime.reader.count() == 0
