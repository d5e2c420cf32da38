"""The snapshot registry on both backends: immutability (Q1), CAS promotion with receipts, rollback, gc."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from knhk.app.runtime import Runtime
from knhk.errors import (
    ImmutableError,
    InvalidInputError,
    NotFoundError,
    RejectedError,
    StaleBaseError,
)
from knhk.ontology.registry import SnapshotRegistry
from knhk.ontology.snapshot import Snapshot, derive, make_snapshot
from knhk.ops.clock import ManualClock
from knhk.proof.entry import Entry
from knhk.sectors import load_pack

Approve = Callable[..., Entry]

FIN = "https://knhk.dev/ns/finance#"
LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"


def label(name: str) -> tuple[str, str, str]:
    return (f"<{FIN}{name}>", LABEL, f'"{name}"')


def child(registry: SnapshotRegistry, base: Snapshot, name: str, clock: ManualClock) -> Snapshot:
    return registry.store(derive(base, additions=[label(name)], created_us=clock.now_us(), proposal_id=name))


@pytest.fixture
def root(registry: SnapshotRegistry) -> Snapshot:
    return registry.install_root("finance", load_pack("finance").sigma, "ops@example.org")


def test_install_root_is_idempotent_and_receipted(registry: SnapshotRegistry, clocked_runtime: Runtime,
                                                  root: Snapshot) -> None:
    assert root.origin == "root"
    assert root.parent is None
    again = registry.install_root("finance", load_pack("finance").sigma, "ops@example.org")
    assert again.id == root.id
    receipts = clocked_runtime.ledger.entries("receipts", kind="snapshot.root")
    assert [(e.fields["sector"], e.fields["subject"]) for e in receipts] == [("finance", root.id)]
    assert registry.current("finance") == root
    assert [h.action for h in registry.history("finance")] == ["root"]
    audit = clocked_runtime.audit.events(action="snapshot.root")
    assert len(audit) == 1
    assert audit[0].resource == f"snapshot/{root.id}"
    assert audit[0].actor != "ops@example.org"  # a pseudonym, never the identity


def test_store_is_immutable_and_idempotent(registry: SnapshotRegistry, root: Snapshot, clock: ManualClock) -> None:
    a = child(registry, root, "A", clock)
    clock.advance(5)
    again = registry.store(derive(root, additions=[label("A")], created_us=clock.now_us(), proposal_id="other"))
    assert again.id == a.id
    assert again.created_us == a.created_us
    assert again.proposal_id == "A"
    forged = Snapshot(**{**a.__dict__, "parent": None})
    with pytest.raises(InvalidInputError, match="does not match its content"):
        registry.store(forged)
    other_sector = make_snapshot("logistics", None, root.triples, origin="root", created_us=1)
    assert other_sector.id == root.id
    with pytest.raises(ImmutableError, match="sector"):
        registry.store(other_sector)


def test_parent_must_be_stored(registry: SnapshotRegistry, root: Snapshot, clock: ManualClock) -> None:
    orphan_base = make_snapshot("finance", root.id, root.triples | {label("Z")}, origin="proposal", created_us=1)
    dangling = derive(orphan_base, additions=[label("Y")], created_us=2)
    with pytest.raises(NotFoundError, match=r"parent snapshot .* is not stored"):
        registry.store(dangling)


def test_reads(registry: SnapshotRegistry, root: Snapshot, clock: ManualClock) -> None:
    clock.advance(1)
    a = child(registry, root, "A", clock)
    clock.advance(1)
    b = child(registry, a, "B", clock)
    fresh = SnapshotRegistry(registry.db, registry.ledger, registry.audit, clock)
    loaded = fresh.get(b.id)
    assert loaded.triples == b.triples
    assert loaded.info == b.info
    assert [i.id for i in fresh.lineage(b.id)] == [b.id, a.id, root.id]
    assert [i.id for i in fresh.children(root.id)] == [a.id]
    assert fresh.diff(root.id, b.id).added == tuple(sorted([label("A"), label("B")]))
    assert fresh.resolve(b.id[:10]) == b.id
    first = fresh.list("finance", limit=2)
    assert [i.id for i in first.items] == [b.id, a.id]
    assert first.next_cursor is not None
    second = fresh.list("finance", limit=2, cursor=first.next_cursor)
    assert [i.id for i in second.items] == [root.id]
    assert second.next_cursor is None
    assert "finance:B" in fresh.export(b.id) or f"<{FIN}B>" in fresh.export(b.id)
    with pytest.raises(NotFoundError):
        fresh.get("0" * 64)
    with pytest.raises(InvalidInputError):
        fresh.get("zz")


def test_current_of_reads_several_sectors_pointers_at_once(registry: SnapshotRegistry, root: Snapshot) -> None:
    other = SnapshotRegistry(registry.db, registry.ledger, registry.audit, registry.clock)
    found = other.current_of(["finance", "logistics", "finance"])
    assert set(found) == {"finance", "logistics"}
    finance = found["finance"]
    assert finance is not None
    assert finance.id == root.id
    assert found["logistics"] is None or found["logistics"].sector == "logistics"
    assert other.current_of([]) == {}
    with pytest.raises(InvalidInputError):
        other.current_of(["Not A Sector"])


def test_promote_requires_a_passing_validation_receipt(registry: SnapshotRegistry, clocked_runtime: Runtime,
                                                       root: Snapshot, clock: ManualClock, approve: Approve) -> None:
    a = child(registry, root, "A", clock)
    with pytest.raises(RejectedError, match="needs a passing validation receipt"):
        registry.promote("finance", a.id, actor="op")
    rejected = approve("finance", a.id, outcome="rejected")
    with pytest.raises(RejectedError, match="outcome 'rejected'"):
        registry.promote("finance", a.id, actor="op", validation_receipt_id=rejected.id)
    for_other = approve("finance", root.id)
    with pytest.raises(RejectedError, match=f"validated snapshot {root.id}"):
        registry.promote("finance", a.id, actor="op", validation_receipt_id=for_other.id)
    with pytest.raises(RejectedError, match="does not exist"):
        registry.promote("finance", a.id, actor="op", validation_receipt_id="f" * 64)
    assert registry.current("finance") == root
    denied = clocked_runtime.audit.events(action="snapshot.promoted")
    assert {e.outcome for e in denied} == {"denied"}
    assert len(denied) == 4

    ok = approve("finance", a.id)
    move = registry.promote("finance", a.id, actor="op", validation_receipt_id=ok.id, reason="drift")
    assert (move.previous_id, move.version, move.forced, move.noop) == (root.id, 1, False, False)
    assert move.receipt is not None
    assert move.receipt.kind == "snapshot.promoted"
    assert move.receipt.fields["data"]["previous"] == root.id
    assert move.receipt.fields["data"]["forced"] is False
    assert move.receipt.fields["reason"] == "drift"
    assert registry.current("finance") == a
    assert registry.current_schema("finance").snapshot_id == a.id
    again = registry.promote("finance", a.id, actor="op", validation_receipt_id=ok.id)
    assert again.noop
    assert again.receipt is None
    history = registry.history("finance")
    assert [(h.seq, h.action, h.snapshot_id, h.validation_receipt_id) for h in history] == \
        [(0, "root", root.id, None), (1, "promote", a.id, ok.id)]
    assert clocked_runtime.ledger.verify("receipts").ok


def test_stale_candidate_is_refused(registry: SnapshotRegistry, clocked_runtime: Runtime, root: Snapshot,
                                   clock: ManualClock, approve: Approve) -> None:
    a = child(registry, root, "A", clock)
    b = child(registry, root, "B", clock)
    registry.promote("finance", a.id, actor="op", validation_receipt_id=approve("finance", a.id).id)
    with pytest.raises(StaleBaseError) as err:
        registry.promote("finance", b.id, actor="op",
                         validation_receipt_id=approve("finance", b.id).id)
    assert err.value.code == "stale_base"
    assert err.value.http_status == 409
    with pytest.raises(StaleBaseError, match="expected"):
        registry.promote("finance", child(registry, a, "C", clock).id, actor="op", expected_current=root.id,
                         force=True)
    assert registry.current("finance") == a


def test_forced_promotion_is_recorded(registry: SnapshotRegistry, root: Snapshot, clock: ManualClock) -> None:
    a = child(registry, root, "A", clock)
    move = registry.promote("finance", a.id, actor="admin", force=True, reason="incident 42")
    assert move.forced
    assert move.receipt is not None
    assert move.receipt.fields["data"]["forced"] is True
    assert move.receipt.fields["outcome"] == "forced"
    assert registry.history("finance")[-1].forced


def test_promotion_of_another_sector_is_refused(registry: SnapshotRegistry, root: Snapshot) -> None:
    logistics = registry.install_root("logistics", load_pack("logistics").sigma, "ops")
    with pytest.raises(InvalidInputError, match="belongs to sector logistics"):
        registry.promote("finance", logistics.id, actor="op", force=True)


def test_rollback_walks_the_parent_chain(registry: SnapshotRegistry, clocked_runtime: Runtime, root: Snapshot,
                                        clock: ManualClock) -> None:
    with pytest.raises(InvalidInputError, match="root snapshot"):
        registry.rollback("finance", actor="op")
    a = child(registry, root, "A", clock)
    registry.promote("finance", a.id, actor="op", force=True)
    b = child(registry, a, "B", clock)
    registry.promote("finance", b.id, actor="op", force=True)
    first = registry.rollback("finance", actor="op", reason="bad guard")
    assert (first.snapshot_id, first.previous_id, first.version) == (a.id, b.id, 3)
    assert first.receipt is not None
    assert first.receipt.kind == "snapshot.rolled_back"
    second = registry.rollback("finance", actor="op")
    assert second.snapshot_id == root.id
    assert registry.current("finance") == root
    with pytest.raises(InvalidInputError):
        registry.rollback("finance", actor="op")
    assert [h.action for h in registry.history("finance")] == ["root", "promote", "promote", "rollback", "rollback"]
    assert len(clocked_runtime.audit.events(action="snapshot.rolled_back")) == 2
    assert clocked_runtime.ledger.verify("receipts").ok


def test_other_process_sees_a_promotion_at_once(registry: SnapshotRegistry, root: Snapshot,
                                                clock: ManualClock) -> None:
    other = SnapshotRegistry(registry.db, registry.ledger, registry.audit, clock)  # another worker's registry
    assert other.current("finance") == root
    assert other.current_schema("finance").snapshot_id == root.id
    before = other.export(root.id)
    a = child(registry, root, "A", clock)
    registry.promote("finance", a.id, actor="op", force=True)
    assert other.current("finance") == a  # the pointer is read, never cached; the content is found by id
    assert other.current_schema("finance").snapshot_id == a.id
    assert other.export(a.id) != before
    assert '"A"' in other.export(a.id)
    assert other.export(root.id) == before  # a snapshot id names one content forever
    registry.rollback("finance", actor="op")
    assert other.current("finance") == root
    assert other.current("healthcare") is None
    with pytest.raises(NotFoundError, match="no current snapshot"):
        other.current_schema("healthcare")


def test_gc_collects_only_old_unpromoted_content(registry: SnapshotRegistry, clocked_runtime: Runtime,
                                                 root: Snapshot, clock: ManualClock) -> None:
    promoted = child(registry, root, "P", clock)
    registry.promote("finance", promoted.id, actor="op", force=True)
    old_orphan = child(registry, root, "Old", clock)
    old_chain_head = child(registry, promoted, "Chain1", clock)
    clock.advance(7200)
    young_tip = child(registry, old_chain_head, "Chain2", clock)
    assert registry.gc("finance") == [old_orphan.id]  # Chain1 stays: its child is young
    assert registry.gc("finance") == []
    with pytest.raises(NotFoundError, match="garbage-collected"):
        SnapshotRegistry(registry.db, registry.ledger, registry.audit, clock).get(old_orphan.id)
    assert registry.info(old_orphan.id).id == old_orphan.id  # metadata stays forever
    clock.advance(7200)
    assert sorted(registry.gc()) == sorted([old_chain_head.id, young_tip.id])
    for kept in (root.id, promoted.id):
        assert registry.get(kept).id == kept
    receipts = clocked_runtime.ledger.entries("receipts", kind="snapshot.collected")
    assert [sorted(e.fields["data"]["collected"]) for e in receipts] == \
        [[old_orphan.id], sorted([old_chain_head.id, young_tip.id])]
    # re-storing identical content brings the content back under the same id
    again = registry.store(derive(root, additions=[label("Old")], created_us=clock.now_us()))
    assert again.id == old_orphan.id
    assert registry.get(old_orphan.id).triples == again.triples
    with pytest.raises(InvalidInputError, match="garbage-collected"):
        registry.store(derive(young_tip, additions=[label("Late")], created_us=clock.now_us()))
    assert clocked_runtime.ledger.verify("receipts").ok


def test_rolled_back_snapshots_are_never_collected(registry: SnapshotRegistry, root: Snapshot,
                                                   clock: ManualClock) -> None:
    a = child(registry, root, "A", clock)
    registry.promote("finance", a.id, actor="op", force=True)
    registry.rollback("finance", actor="op")
    clock.advance(10 * 86_400)
    assert registry.gc("finance", min_age_s=0) == []
    assert registry.get(a.id).id == a.id
