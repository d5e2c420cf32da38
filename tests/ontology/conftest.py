"""Fixtures for the ontology tests: a registry over a runtime driven by a manual clock, on both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.ontology.registry import SnapshotRegistry
from knhk.ops.clock import ManualClock
from knhk.proof.entry import Entry, EntryDraft


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_runtime(settings: Settings, clock: ManualClock) -> Iterator[Runtime]:
    rt = Runtime.open(settings, clock=clock, install_packs=False)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def registry(clocked_runtime: Runtime, clock: ManualClock) -> SnapshotRegistry:
    return SnapshotRegistry(clocked_runtime.db, clocked_runtime.ledger, clocked_runtime.audit, clock,
                            gc_min_age_s=3600)


Approve = Callable[..., Entry]


@pytest.fixture
def approve(clocked_runtime: Runtime) -> Approve:
    """Writes the validation receipt the pipeline writes for a snapshot: ``approve(sector, id, outcome=…)``."""

    def write(sector: str, snapshot_id: str, outcome: str = "approved") -> Entry:
        return clocked_runtime.ledger.append(EntryDraft(
            log="receipts", kind="proposal.validated", sector=sector, subject="proposal-1", outcome=outcome,
            data={"snapshot_id": snapshot_id, "passed": ["static"], "failed": []}))

    return write
