"""The ledger's transactional outbox on both backends: receipts commit with the observations they are owed for,
a failed ledger write after that commit loses nothing, each row becomes exactly one entry (two sequencers
draining at once), drained rows are marked once and kept, and ingest counts become one audit entry per
principal, sector and minute."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.errors import KnhkError
from knhk.ledger import receipts
from knhk.ops.clock import ManualClock, format_rfc3339
from knhk.storage.database import Database

T0 = 1_714_564_800_000_000  # a minute boundary
ALICE = local_principal("alice@bank.example", roles=("ingestor",))
BOB = local_principal("bob@bank.example", roles=("ingestor",))


def payment(name: str, amount: int, ts_us: int = T0) -> dict[str, Any]:
    return {"id": name, "event_type": "payment.created", "sector": "finance", "timestamp": format_rfc3339(ts_us),
            "value": {"account_id": "A", "transaction_amount": amount, "currency": "EUR"}}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + 10_000_000)


@pytest.fixture
def app(settings: Settings, clock: ManualClock) -> Iterator[Application]:
    application = Application.open(settings, access=LocalAccess(), clock=clock)
    try:
        yield application
    finally:
        application.close()


def refuse_ledger_writes(db: Database) -> None:
    """A real database refusal of every new ledger entry (what a full disk or a revoked grant looks like to the
    sequencer): a trigger, dropped again by :func:`allow_ledger_writes`."""
    with db.connection() as conn:
        if conn.dialect == "sqlite":
            conn.execute("CREATE TRIGGER test_refuse BEFORE INSERT ON ledger_entries"
                         " BEGIN SELECT RAISE(ABORT, 'ledger writes refused by the test'); END")
        else:
            conn.execute("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                         " RAISE EXCEPTION 'ledger writes refused by the test'; END $$")
            conn.execute("CREATE TRIGGER test_refuse BEFORE INSERT ON ledger_entries"
                         " FOR EACH ROW EXECUTE FUNCTION test_refuse()")


def allow_ledger_writes(db: Database) -> None:
    with db.connection() as conn:
        conn.execute("DROP TRIGGER test_refuse" if conn.dialect == "sqlite" else
                     "DROP TRIGGER test_refuse ON ledger_entries")


def guard_receipts(rt: Runtime, subject: str) -> list[Any]:
    return [e for kind in (receipts.GUARD_VIOLATED, receipts.ALERT_RAISED)
            for e in rt.ledger.entries(receipts.RECEIPTS, kind=kind, limit=1000) if e.subject == subject]


def test_a_failed_ledger_write_after_the_commit_loses_no_receipt(app: Application) -> None:
    rt = app.runtime
    rt.ingestor.receipt_wait_s = 0.5
    refuse_ledger_writes(rt.db)
    result = app.ingest_batch(ALICE, [payment("p-1", 5), payment("p-2", 2_000_000)])[1]
    # acknowledged: stored, its receipts owed, not in the ledger yet
    assert (result.receipt_ids, result.receipts_pending, len(result.violations)) == ((), 2, 1)
    assert rt.reader.get("p-2").id == "p-2"
    assert app.outbox_pending() == 3  # two receipts and the ingest count
    assert guard_receipts(rt, "p-2") == []
    with pytest.raises(KnhkError, match="refused by the test"):
        rt.ledger.flush_outbox()
    allow_ledger_writes(rt.db)
    assert rt.ledger.flush_outbox() == 2  # the count waits for its minute to end
    guard, alert = guard_receipts(rt, "p-2")
    assert (guard.kind, alert.kind, guard.outcome, alert.outcome) == ("guard.violated", "alert.raised",
                                                                      "violated", "critical")
    assert guard.data["evidence_count"] == 1
    assert guard.data["evidence_root"] == alert.data["evidence_root"]
    assert rt.ledger.flush_outbox() == 0  # exactly once
    again = app.ingest_batch(ALICE, [payment("p-2", 2_000_000)])[0]
    assert again.duplicate
    assert app.outbox_pending() == 1
    assert len(guard_receipts(rt, "p-2")) == 2
    assert rt.ledger.verify("receipts").ok


def test_receipts_come_with_the_ingest_when_the_ledger_takes_them(app: Application) -> None:
    result = app.ingest(ALICE, payment("p-9", 3_000_000))
    assert result.receipts_pending == 0
    assert {e.id for e in guard_receipts(app.runtime, "p-9")} == set(result.receipt_ids)
    assert len(result.receipt_ids) == 2


def test_a_rolled_back_transaction_owes_nothing(app: Application) -> None:
    rt = app.runtime
    draft = receipts.audit_event(action="test.staged", resource="r/1", outcome="success", reason=None,
                                 metadata={}, sector=None, actor="sub_x")

    def failing_change() -> None:
        with rt.db.transaction() as conn:
            rt.ledger.stage(conn, [draft])
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        failing_change()
    assert app.outbox_pending() == 0


def test_drained_rows_are_marked_once_and_kept(app: Application) -> None:
    rt = app.runtime
    app.ingest(ALICE, payment("p-3", 4_000_000))
    with rt.db.connection() as conn:
        row_id, seq = conn.fetchone("SELECT id, seq FROM ledger_outbox WHERE seq IS NOT NULL ORDER BY id LIMIT 1")
        entry = rt.ledger.entry(receipts.RECEIPTS, int(seq))
        assert entry.subject == "p-3"
        for statement in ("UPDATE ledger_outbox SET seq = seq + 1 WHERE id = ?",
                          "UPDATE ledger_outbox SET draft = '{}' WHERE id = ?",
                          "DELETE FROM ledger_outbox WHERE id = ?"):
            with pytest.raises(Exception, match="ledger_outbox"):
                conn.execute(statement, (row_id,))
        pending = conn.fetchone("SELECT id FROM ledger_outbox WHERE seq IS NULL")
        assert pending is not None  # the ingest count, due after its minute
        with pytest.raises(Exception, match="ledger_outbox"):
            conn.execute("UPDATE ledger_outbox SET due_us = 0 WHERE id = ?", (pending[0],))


def test_two_sequencers_drain_every_row_exactly_once(settings: Settings) -> None:
    first, second = Runtime.open(settings), Runtime.open(settings)  # two replicas of one installation
    try:
        drafts = [receipts.audit_event(action="test.staged", resource=f"r/{i}", outcome="success", reason=None,
                                       metadata={}, sector=None, actor="sub_x") for i in range(600)]
        with first.db.transaction() as conn:
            rows = first.ledger.stage(conn, drafts)
        written: list[int] = []
        threads = [threading.Thread(target=lambda rt=rt: written.append(rt.ledger.flush_outbox()))
                   for rt in (first, second, first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(written) == 600
        entries = first.ledger.entries(receipts.AUDIT, kind="test.staged", limit=1000)
        assert sorted(e.data["resource"] for e in entries) == sorted(f"r/{i}" for i in range(600))
        with first.db.connection() as conn:
            seqs = dict(conn.fetchall("SELECT id, seq FROM ledger_outbox"))
        assert sorted(seqs[r] for r in rows) == sorted(e.seq for e in entries)
        assert first.ledger.verify(receipts.AUDIT).ok
    finally:
        first.close()
        second.close()


def test_ingest_counts_become_one_audit_entry_per_principal_sector_and_minute(app: Application,
                                                                              clock: ManualClock) -> None:
    rt = app.runtime
    app.ingest_batch(ALICE, [payment(f"a-{i}", 1) for i in range(5)])
    app.ingest(ALICE, payment("a-9", 1))
    app.ingest(BOB, payment("b-1", 1))
    app.ingest(BOB, payment("b-1", 1))  # a duplicate is not counted
    assert app.ingest_audit.flush() == 0  # the minute has not ended
    clock.advance(60)
    assert app.ingest_audit.flush() == 2
    events = {e.actor: e for e in app.audit_events(local_principal("auditor", roles=("administrator",)),
                                                   action="observations.ingested")}
    assert {e.metadata["count"] for e in events.values()} == {"6", "1"}
    minute = str(T0 // 1_000_000)
    assert {(e.resource, e.metadata["minute"]) for e in events.values()} == {("sector/finance", minute)}
    assert set(events) == {rt.subjects.pseudonym(ALICE.identity), rt.subjects.pseudonym(BOB.identity)}
    app.ingest(BOB, payment("b-2", 1, ts_us=clock.now_us()))
    assert app.ingest_audit.flush(everything=True) == 1  # at shutdown: this process's current minute too
    assert app.outbox_pending() == 0


def test_the_service_drains_what_a_dead_process_owed(settings: Settings, clock: ManualClock) -> None:
    """Rows staged by a process that never drained them (it died) are drained by another's poll."""
    dead = Runtime.open(settings, clock=clock)
    draft = receipts.audit_event(action="test.staged", resource="r/dead", outcome="success", reason=None,
                                 metadata={}, sector=None, actor="sub_x")
    with dead.db.transaction() as conn:
        dead.ledger.stage(conn, [draft])
    dead.db.close()  # no drain, no close of its sequencer: as if killed
    live = Runtime.open(settings.model_copy(update={"outbox_drain_interval_s": 0.1}), clock=clock)
    try:
        live.ledger.start_polling()
        deadline = time.monotonic() + 10
        while live.ledger.outbox_pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.ledger.outbox_pending() == 0
        entry, = live.ledger.entries(receipts.AUDIT, kind="test.staged")
        assert entry.data["resource"] == "r/dead"
    finally:
        live.close()
