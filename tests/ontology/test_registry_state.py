"""Stateful property test of the snapshot registry over random propose / promote / rollback / gc sequences
(real registry, real ledger, embedded SQLite), checked against a small model after every step."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.errors import InvalidInputError, NotFoundError, RejectedError, StaleBaseError
from knhk.ontology.registry import SnapshotRegistry
from knhk.ontology.snapshot import derive
from knhk.ops.clock import ManualClock
from knhk.proof.entry import EntryDraft
from knhk.sectors import load_pack

SECTOR = "logistics"
MIN_AGE_S = 60
LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"


class RegistryMachine(RuleBasedStateMachine):
    snapshots = Bundle("snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="knhk-registry-"))
        self.clock = ManualClock()
        self.runtime = Runtime.open(Settings(data_dir=self.tmp, database_url=f"sqlite:///{self.tmp / 'k.db'}",
                                             checkpoint_every_seconds=3600), clock=self.clock,
                                    install_packs=False)
        self.registry = SnapshotRegistry(self.runtime.db, self.runtime.ledger, self.runtime.audit, self.clock,
                                         gc_min_age_s=MIN_AGE_S)
        self.parent: dict[str, str | None] = {}
        self.created: dict[str, int] = {}
        self.promoted: set[str] = set()
        self.collected: set[str] = set()
        self.current = ""
        self.counter = 0

    def teardown(self) -> None:
        try:
            assert self.runtime.ledger.verify("receipts").ok
            assert self.runtime.ledger.verify("audit").ok
        finally:
            self.runtime.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @initialize(target=snapshots)
    def install(self) -> str:
        root = self.registry.install_root(SECTOR, load_pack(SECTOR).sigma, "ops")
        self.parent[root.id] = None
        self.created[root.id] = root.created_us
        self.promoted.add(root.id)
        self.current = root.id
        return root.id

    @rule(seconds=st.sampled_from([1, 30, 90, 600]))
    def wait(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(target=snapshots, base=snapshots, reuse=st.booleans())
    def propose(self, base: str, reuse: bool) -> object:
        if base in self.collected:
            try:
                self.registry.get(base)
            except NotFoundError:
                return multiple()
            raise AssertionError(f"collected snapshot {base} is still readable")
        if not reuse:
            self.counter += 1
        name = f"N{self.counter}"
        candidate = derive(self.registry.get(base),
                           additions=[(f"<https://knhk.dev/ns/logistics#{name}>", LABEL, f'"{name}"')],
                           created_us=self.clock.now_us())
        stored = self.registry.store(candidate)
        if stored.id in self.parent:  # identical content under the same parent: the same snapshot
            assert self.parent[stored.id] == base
            self.collected.discard(stored.id)  # an identical re-store restores collected content
            return multiple()
        self.parent[stored.id] = base
        self.created[stored.id] = stored.created_us
        return stored.id

    @rule(candidate=snapshots, validated=st.booleans())
    def promote(self, candidate: str, validated: bool) -> None:
        receipt = None
        if validated:
            receipt = self.runtime.ledger.append(EntryDraft(
                log="receipts", kind="proposal.validated", sector=SECTOR, outcome="approved",
                data={"snapshot_id": candidate}))
        try:
            move = self.registry.promote(SECTOR, candidate, actor="op",
                                         validation_receipt_id=None if receipt is None else receipt.id)
        except NotFoundError:
            assert candidate in self.collected
            event("promote: collected")
            return
        except StaleBaseError:
            assert self.parent[candidate] != self.current
            assert candidate != self.current
            event("promote: stale")
            return
        except RejectedError:
            assert not validated
            assert self.parent[candidate] == self.current
            event("promote: rejected")
            return
        assert candidate not in self.collected
        if move.noop:
            assert candidate == self.current
            return
        assert self.parent[candidate] == self.current, "promotion must be a CAS on the parent"
        assert validated
        event("promote: moved")
        self.current = candidate
        self.promoted.add(candidate)

    @rule()
    def rollback(self) -> None:
        parent = self.parent[self.current]
        try:
            move = self.registry.rollback(SECTOR, actor="op")
        except InvalidInputError:
            assert parent is None
            return
        assert parent is not None
        assert move.snapshot_id == parent
        event("rollback: moved")
        self.current = parent

    @rule(min_age=st.sampled_from([0, MIN_AGE_S]))
    def gc(self, min_age: int) -> None:
        cutoff = self.clock.now_us() - min_age * 1_000_000
        stored = set(self.parent) - self.collected
        expected = {s for s in stored if s not in self.promoted and s != self.current and self.created[s] < cutoff}
        changed = True
        while changed:
            changed = False
            for sid in sorted(expected):
                if any(p == sid and kid not in expected for kid, p in self.parent.items() if kid in stored):
                    expected.discard(sid)
                    changed = True
        collected = self.registry.gc(SECTOR, min_age_s=min_age)
        assert set(collected) == expected
        assert not set(collected) & self.promoted
        self.collected |= set(collected)
        event(f"gc: {'collected' if collected else 'nothing'}")

    @invariant()
    def pointer_names_a_stored_snapshot(self) -> None:
        if not self.current:
            return
        fresh = SnapshotRegistry(self.runtime.db, self.runtime.ledger, self.runtime.audit, self.clock)
        current = fresh.current(SECTOR)
        assert current is not None
        assert current.id == self.current
        assert self.registry.current(SECTOR) == current

    @invariant()
    def history_is_one_linear_sequence_of_cas_moves(self) -> None:
        if not self.current:
            return
        history = self.registry.history(SECTOR)
        assert [h.seq for h in history] == list(range(len(history)))
        assert history[0].action == "root"
        assert history[0].previous_id is None
        for before, after in itertools.pairwise(history):
            assert after.previous_id == before.snapshot_id
            if after.action == "promote":
                assert self.parent[after.snapshot_id] == before.snapshot_id
            else:
                assert after.action == "rollback"
                assert self.parent[before.snapshot_id] == after.snapshot_id
        assert history[-1].snapshot_id == self.current

    @invariant()
    def dag_is_acyclic_and_promoted_content_kept(self) -> None:
        for sid in self.parent:
            chain = [info.id for info in self.registry.lineage(sid)]
            assert len(chain) == len(set(chain))
            assert self.parent[chain[-1]] is None
            assert all(self.parent[a] == b for a, b in itertools.pairwise(chain))
        for sid in self.promoted:
            assert self.registry.get(sid).id == sid


RegistryMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRegistryStateMachine = RegistryMachine.TestCase
