"""Stateful properties of the loop (Hypothesis ``RuleBasedStateMachine``, embedded SQLite, kept quick).

1. Under any sequence of propose / validate / execute / approve / promote / rollback, the snapshot DAG stays
   acyclic, every sector's pointer history is one unbroken chain (versions contiguous, each move starting
   where the previous ended), and every promotion extends the snapshot that was current: it never forks.
2. Cycles are idempotent: re-running a cycle at the same clock never changes the set of proposals (with
   their statuses) or the current snapshot, whatever was ingested and approved before.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from loop_support import LABEL, MONDAY_10, TYPE, observation, open_runtime, plan, term

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.errors import ConflictError, KnhkError
from knhk.ontology.namespaces import RDFS_CLASS, iri, literal
from knhk.ops.clock import ManualClock
from knhk.proposals.model import FINAL

SECTORS = ("finance", "manufacturing")
APPROVERS = [("alice@bank.example", "finance", ["validator"]), ("carol@bank.example", "compliance", ["validator"]),
             ("bob@bank.example", "finance", ["validator"])]  # bob authors every human proposal
QUICK = settings(max_examples=20, stateful_step_count=15, deadline=None)


def fresh_runtime() -> tuple[Runtime, ManualClock, Path]:
    folder = Path(tempfile.mkdtemp(prefix="knhk-sm-"))
    clock = ManualClock(MONDAY_10)
    settings_ = Settings(data_dir=folder, database_url=f"sqlite:///{folder / 'knhk.db'}", db_pool_min=1,
                         db_pool_max=4, checkpoint_every_entries=10_000, checkpoint_every_seconds=3600)
    return open_runtime(settings_, clock), clock, folder


class SnapshotDag(RuleBasedStateMachine):
    proposals = Bundle("proposals")

    def __init__(self) -> None:
        super().__init__()
        self.rt, self.clock, self.folder = fresh_runtime()

    def teardown(self) -> None:
        self.rt.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(target=proposals, sector=st.sampled_from(SECTORS), n=st.integers(0, 3), bad=st.booleans())
    def propose(self, sector: str, n: int, bad: bool) -> str:
        self.clock.advance(1)
        if bad:  # a class without a superclass: the static stage rejects it
            change = plan([(term(sector, f"Bad{n}"), TYPE, iri(RDFS_CLASS))])
        else:
            change = plan([(term(sector, "PaymentCreated" if sector == "finance" else "MachineReading"), LABEL,
                            literal(f"label {n}"))])
        try:
            proposal, _ = self.rt.proposals.create(sector, change, pattern=None, author="bob@bank.example")
        except KnhkError:
            return "none"
        return proposal.id

    @rule(pid=proposals)
    def validate(self, pid: str) -> None:
        if pid != "none":
            self.clock.advance(1)
            before = self.rt.proposals.get(pid)[1].status
            if before in FINAL:  # a final state is never validated again, and never changes
                with pytest.raises(ConflictError):
                    self.rt.proposals.validate(pid)
                assert self.rt.proposals.get(pid)[1].status == before
            else:
                self.rt.proposals.validate(pid)

    @rule(pid=proposals)
    def execute(self, pid: str) -> None:
        if pid != "none":
            self.clock.advance(1)
            self.rt.proposals.execute(pid)

    @rule(pid=proposals, who=st.sampled_from(APPROVERS))
    def approve(self, pid: str, who: tuple[str, str, list[str]]) -> None:
        if pid == "none":
            return
        self.clock.advance(1)
        with contextlib.suppress(KnhkError):
            self.rt.proposals.decide(pid, identity=who[0], sector_attr=who[1], roles=who[2])

    @rule(pid=proposals, force=st.booleans())
    def promote(self, pid: str, force: bool) -> None:
        if pid == "none":
            return
        proposal, _ = self.rt.proposals.get(pid)
        passing = [v["receipt_id"] for v in self.rt.proposals.validations(pid) if v["outcome"] == "approved"]
        self.clock.advance(1)
        with contextlib.suppress(KnhkError):
            self.rt.registry.promote(proposal.sector, proposal.candidate_id, actor="ops@example.org",
                                     validation_receipt_id=passing[-1] if passing else None, force=force)

    @rule(sector=st.sampled_from(SECTORS))
    def rollback(self, sector: str) -> None:
        self.clock.advance(1)
        with contextlib.suppress(KnhkError):
            self.rt.registry.rollback(sector, actor="ops@example.org")

    @invariant()
    def dag_is_acyclic_and_pointer_history_never_forks(self) -> None:
        for sector in SECTORS:
            infos = self.rt.registry.list(sector, limit=1000).items
            parent = {i.id: i.parent for i in infos}
            for start in parent:
                seen: set[str] = set()
                node: str | None = start
                while node is not None:
                    assert node not in seen, "the snapshot DAG has a cycle"
                    seen.add(node)
                    node = parent.get(node)
            history = sorted(self.rt.registry.history(sector), key=lambda h: h.seq)
            assert [h.seq for h in history] == list(range(len(history)))
            assert history[0].action == "root"
            for prev, move in itertools.pairwise(history):
                assert move.previous_id == prev.snapshot_id
                if move.action == "promote":
                    assert parent[move.snapshot_id] == prev.snapshot_id, "a promotion forked the lineage"
                    if not move.forced:
                        receipt = self.rt.ledger.entry_by_id(move.validation_receipt_id or "")
                        assert receipt.fields["outcome"] == "approved"
                        assert receipt.fields["data"]["snapshot_id"] == move.snapshot_id
                else:
                    assert move.action == "rollback"
                    assert parent[prev.snapshot_id] == move.snapshot_id
            current = self.rt.registry.current(sector)
            assert current is not None
            assert current.id == history[-1].snapshot_id
            event(f"{sector}: {sum(h.action == 'promote' for h in history)} promotion(s), "
                  f"{sum(h.action == 'rollback' for h in history)} rollback(s)")


class IdempotentCycles(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rt, self.clock, self.folder = fresh_runtime()
        self.n = 0

    def teardown(self) -> None:
        self.rt.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @initialize(kinds=st.lists(st.sampled_from(["refund", "maintenance", "unit", "reading"]), min_size=1,
                               max_size=3, unique=True))
    def seed(self, kinds: list[str]) -> None:
        """Start from traffic that drifts, so most examples have proposals to be idempotent about."""
        for kind in kinds:
            self.ingest(kind, 12)

    @rule(kind=st.sampled_from(["refund", "maintenance", "reading", "error", "unit"]), count=st.integers(1, 60))
    def ingest(self, kind: str, count: int) -> None:
        sector, event_type, value = {
            "refund": ("finance", "refund.issued", {"account_id": "a", "transaction_amount": 5}),
            "maintenance": ("manufacturing", "maintenance.completed", {"machine_id": "m", "technician": "t"}),
            "reading": ("manufacturing", "machine.reading", {"machine_id": "m", "temperature": 20}),
            "error": ("manufacturing", "machine.error", {"machine_id": "m", "error_code": "E1"}),
            "unit": ("manufacturing", "machine.reading", {"machine_id": "m", "temperature": 20, "unit": "C"}),
        }[kind]
        now = self.clock.now_us()
        raws = [observation(sector, event_type, value, now + i, f"o-{self.n + i}") for i in range(count)]
        self.n += count
        self.rt.ingestor.ingest_batch(raws)

    @rule(seconds=st.sampled_from([1, 5, 30, 61]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(who=st.sampled_from(APPROVERS[:2]))
    def approve_held(self, who: tuple[str, str, list[str]]) -> None:
        for proposal, _ in self.rt.proposals.find(status="held"):
            with contextlib.suppress(KnhkError):
                self.rt.proposals.decide(proposal.id, identity=who[0], sector_attr=who[1], roles=who[2])

    @rule(sector=st.sampled_from(SECTORS))
    def cycle_twice(self, sector: str) -> None:
        """Cycles run again at once, with no new observations, reach a fixpoint: a repeat run plans again only
        what a promotion of the run before it made new (a pattern planned on the base that promotion
        replaced is a new proposal on the new base, validated on its own), and once a run changes nothing,
        the next one changes nothing either."""
        self.clock.advance(1)
        base = self.rt.registry.current(sector)
        self.rt.coordinator.run_cycle(sector)
        for _ in range(8):  # each repeat needs a promotion in the run before it: bounded by the patterns
            current = self.rt.registry.current(sector)
            proposals = {p.id: (p, s.status) for p, s in self.rt.proposals.find(sector=sector, limit=1000)}
            again = self.rt.coordinator.run_cycle(sector)
            after = {p.id: (p, s.status) for p, s in self.rt.proposals.find(sector=sector, limit=1000)}
            assert {pid: status for pid, (_, status) in after.items() if pid in proposals} == \
                {pid: status for pid, (_, status) in proposals.items()}  # decided proposals stay decided
            new = [p for pid, (p, _) in after.items() if pid not in proposals]
            if not new and again.counts["promotions"] == 0:
                assert self.rt.registry.current(sector) == current
                break
            assert current != base, "a repeat run planned anew although the run before it promoted nothing"
            assert current is not None
            assert all(p.base_id == current.id for p in new)  # only on the base the previous run promoted
            base = current
        else:
            raise AssertionError("repeated cycles did not reach a fixpoint")
        final = self.rt.coordinator.run_cycle(sector)
        assert final.counts["proposals"] == 0
        assert final.counts["promotions"] == 0
        event(f"proposals so far: {min(len(after), 3)}+")


TestSnapshotDag = SnapshotDag.TestCase
TestSnapshotDag.settings = QUICK
TestIdempotentCycles = IdempotentCycles.TestCase
TestIdempotentCycles.settings = QUICK
