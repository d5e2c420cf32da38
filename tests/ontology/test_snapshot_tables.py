"""The database itself protects snapshots (migration 0004), on both backends: metadata, history and the
collection log are append-only; content of a snapshot a pointer ever named can never be deleted; a pointer
moves one version at a time and is never deleted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from knhk.ontology.registry import SnapshotRegistry
from knhk.ontology.snapshot import Snapshot, derive
from knhk.ops.clock import ManualClock
from knhk.proof.entry import Entry
from knhk.sectors import load_pack
from knhk.storage.database import Database

LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"


@pytest.fixture
def promoted_and_orphan(registry: SnapshotRegistry, clock: ManualClock,
                        approve: Callable[..., Entry]) -> tuple[Snapshot, Snapshot, Snapshot]:
    root = registry.install_root("manufacturing", load_pack("manufacturing").sigma, "ops")
    promoted = registry.store(derive(root, additions=[("<https://knhk.dev/ns/manufacturing#A>", LABEL, '"A"')],
                                     created_us=clock.now_us()))
    registry.promote("manufacturing", promoted.id, actor="op",
                     validation_receipt_id=approve("manufacturing", promoted.id).id)
    orphan = registry.store(derive(root, additions=[("<https://knhk.dev/ns/manufacturing#B>", LABEL, '"B"')],
                                   created_us=clock.now_us()))
    return root, promoted, orphan


def refused(db: Database, sql: str, params: tuple[object, ...] = ()) -> str:
    with pytest.raises(Exception) as err, db.transaction() as conn:
        conn.execute(sql, params)
    return str(err.value)


@pytest.mark.usefixtures("promoted_and_orphan")
def test_metadata_history_and_log_are_append_only(registry: SnapshotRegistry) -> None:
    db = registry.db
    assert "append-only" in refused(db, "UPDATE snapshots SET proposal_id='x'")
    assert "append-only" in refused(db, "DELETE FROM snapshots")
    assert "append-only" in refused(db, "UPDATE snapshot_history SET forced=1")
    assert "append-only" in refused(db, "DELETE FROM snapshot_history")
    assert "UPDATE refused" in refused(db, "UPDATE snapshot_contents SET content=content")
    if db.dialect == "postgresql":
        for table in ("snapshots", "snapshot_contents", "snapshot_history", "snapshot_pointers",
                      "snapshot_collections"):
            assert "refused" in refused(db, f"TRUNCATE {table} CASCADE")


def test_promoted_content_can_never_be_deleted(registry: SnapshotRegistry,
                                               promoted_and_orphan: tuple[Snapshot, Snapshot, Snapshot]) -> None:
    root, promoted, orphan = promoted_and_orphan
    db = registry.db
    for kept in (root, promoted):
        assert "promoted snapshot can never be deleted" in refused(
            db, "DELETE FROM snapshot_contents WHERE id=?", (kept.id,))
    with db.transaction() as conn:
        assert conn.execute("DELETE FROM snapshot_contents WHERE id=?", (orphan.id,)) == 1
    with db.connection() as conn:
        assert conn.fetchone("SELECT COUNT(*) FROM snapshot_contents")[0] == 2  # type: ignore[index]


def test_pointer_moves_one_version_at_a_time(registry: SnapshotRegistry,
                                             promoted_and_orphan: tuple[Snapshot, Snapshot, Snapshot]) -> None:
    root, _, _ = promoted_and_orphan
    db = registry.db
    assert "one version at a time" in refused(db, "UPDATE snapshot_pointers SET snapshot_id=?", (root.id,))
    assert "one version at a time" in refused(db, "UPDATE snapshot_pointers SET version=version+2")
    assert "refused" in refused(db, "DELETE FROM snapshot_pointers")
