"""The life of a proposal: created from a plan, validated, held, approved or rejected by people, promoted.

Every step writes its receipt (``proposal.created``, ``proposal.validated``, ``proposal.held``,
``approval.recorded`` / ``approval.refused``, ``snapshot.promoted`` via the registry) and, for people's
actions, an audit entry. Identities are pseudonymised before anything is stored. A promotion that meets a
stale base (another change was promoted meanwhile) is rebased once: the same ΔΣ becomes a new proposal on the
new current snapshot and is validated again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uuid_utils

from knhk.audit.log import AuditLog
from knhk.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    KnhkError,
    NotFoundError,
    RejectedError,
    StaleBaseError,
)
from knhk.governance.approvals import ApprovalRecord, check_approval
from knhk.ledger import receipts
from knhk.ledger.ledger import Ledger
from knhk.loop import store as sql
from knhk.observations.model import Observation
from knhk.observations.reader import ObservationReader
from knhk.ontology.incremental import Overlay, SigmaIndex, incremental_schema, neighbourhood, subgraph
from knhk.ontology.registry import SnapshotRegistry
from knhk.ontology.schema import SectorSchema
from knhk.ontology.snapshot import Snapshot, derive
from knhk.ops.clock import Clock
from knhk.proof.entry import Entry
from knhk.proposals.delta import DeltaSigma
from knhk.proposals.model import FINAL, OPEN, Proposal, ProposalStatus, proposal_id
from knhk.proposals.proposer import Plan
from knhk.storage.database import Database
from knhk.validation.classes import EMERGENCY, MAJOR, NORMAL, STANDARD, ClassRules, classify
from knhk.validation.doctrines import Approver, Doctrine
from knhk.validation.guard_changes import guard_changes
from knhk.validation.pipeline import ValidationInput, validate
from knhk.validation.shadow import ShadowLimits, replay
from knhk.validation.stages import ValidationReport

log = logging.getLogger("knhk.loop")

RULE_PROPOSER = "system:rule-proposer"
LOOP_ACTOR = "system:knhk-loop"
DAY_US = 86_400_000_000


@dataclass
class LoopPolicy:
    """Tunables of the Execute phase."""

    recent_observations: int = 1000
    daily_change_budget: int = 100
    approval_expiry_s: int = 7 * 24 * 3600
    limits: ShadowLimits = field(default_factory=ShadowLimits)


@dataclass
class Execution:
    """What executing one proposal did."""

    proposal: Proposal
    report: ValidationReport | None
    outcome: str  # approved→promoted, rejected, held, no_op, expired, superseded
    promoted_snapshot: str | None = None
    receipts: list[str] = field(default_factory=list)
    rebased_to: str | None = None
    klass: dict[str, str] = field(default_factory=dict)  # the proposal's change class and its reason

    def to_json(self) -> dict[str, Any]:
        """The execution as the API and CLI answer it."""
        return {"proposal_id": self.proposal.id, "outcome": self.outcome, "promoted_snapshot": self.promoted_snapshot,
                "receipts": self.receipts, "report": None if self.report is None else self.report.to_json(),
                "change_class": self.klass.get("change_class"), "class_reason": self.klass.get("class_reason")}


class ProposalService:
    """Creates, validates, approves and promotes proposals for every sector."""

    def __init__(self, db: Database, ledger: Ledger, audit: AuditLog, registry: SnapshotRegistry,
                 reader: ObservationReader, doctrines_for: Callable[[str], Sequence[Doctrine]], clock: Clock,
                 policy: LoopPolicy | None = None, classes_for: Callable[[str], ClassRules] | None = None) -> None:
        self.db = db
        self.ledger = ledger
        self.audit = audit
        self.registry = registry
        self.reader = reader
        self.doctrines_for = doctrines_for
        self.clock = clock
        self.policy = policy or LoopPolicy()
        self.classes_for: Callable[[str], ClassRules] = classes_for or (lambda _sector: ClassRules())
        self._time_checked: tuple[int, int | None] | None = None
        self._recent_cache: dict[str, tuple[int, list[Observation]]] = {}
        #: (sector, pattern kind, accepted) of proposals people decided on; the runtime wires the learner here
        self.on_outcome: Callable[[str, str, bool], object] | None = None
        self._time_lock = threading.Lock()
        self._indexes: OrderedDict[str, SigmaIndex] = OrderedDict()
        self._candidate_schemas: OrderedDict[str, SectorSchema] = OrderedDict()
        self._index_lock = threading.Lock()

    def _index(self, snapshot_id: str, triples: frozenset[tuple[str, str, str]]) -> SigmaIndex:
        """The base snapshot's index, built once per base (a few bases are live at a time)."""
        with self._index_lock:
            found = self._indexes.get(snapshot_id)
            if found is not None:
                self._indexes.move_to_end(snapshot_id)
                return found
        index = SigmaIndex(triples)
        with self._index_lock:
            self._indexes[snapshot_id] = index
            while len(self._indexes) > 4:
                self._indexes.popitem(last=False)
        return index

    # -- reading --------------------------------------------------------------------------------------
    def get(self, pid: str) -> tuple[Proposal, ProposalStatus]:
        with self.db.connection() as conn:
            p = sql.get_proposal(conn, pid)
            st = sql.get_status(conn, pid)
        if p is None or st is None:
            raise NotFoundError(f"no proposal {pid}")
        return p, st

    def resolve(self, ref: str) -> str:
        """A full proposal id from an id or a unique prefix (``prop_`` and at least 6 hex digits, as the demo
        and the lists print them, with or without the trailing ``…``)."""
        text = ref.strip().rstrip("…").lower()
        hexpart = text.removeprefix("prop_")
        if not text.startswith("prop_") or len(hexpart) < 6 or any(c not in "0123456789abcdef" for c in hexpart):
            raise NotFoundError(f"no proposal {ref!r}: a proposal id is 'prop_' and hex digits (a unique prefix of"
                                " ≥ 6 of them will do)")
        with self.db.connection() as conn:
            found = sql.find_proposals_by_prefix(conn, text)
        if not found:
            raise NotFoundError(f"no proposal {text}")
        if len(found) > 1 and text not in found:
            raise InvalidInputError(f"proposal prefix {text} is ambiguous; give more characters")
        return text if text in found else found[0]

    def find(self, *, sector: str | None = None, status: str | None = None, limit: int = 100,
             overdue: bool = False) -> list[tuple[Proposal, ProposalStatus]]:
        """Proposals, newest first; ``overdue``: emergency changes whose post-hoc review is past due."""
        with self.db.connection() as conn:
            return sql.list_proposals(conn, sector=sector, status=status, limit=limit,
                                      overdue_at_us=self.clock.now_us() if overdue else None)

    def decided(self, sector: str, limit: int = 5) -> list[tuple[Proposal, ProposalStatus]]:
        """The sector's most recently promoted and rejected proposals (``limit`` of each, newest first): the
        examples the LLM proposer learns from."""
        with self.db.connection() as conn:
            return [*sql.list_proposals(conn, sector=sector, status="promoted", limit=limit),
                    *sql.list_proposals(conn, sector=sector, status="rejected", limit=limit)]

    def review_of(self, pid: str) -> sql.Review | None:
        with self.db.connection() as conn:
            return sql.get_review(conn, pid)

    def validations(self, pid: str) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return sql.validations_of(conn, pid)

    def approvals(self, pid: str) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return sql.approvals_of(conn, pid)

    # -- creating -------------------------------------------------------------------------------------
    def create(self, sector: str, plan: Plan, *, pattern: str | None, author: str = RULE_PROPOSER,
               proposer: str = "rule", requested_class: str | None = None,
               llm: Mapping[str, Any] | None = None) -> tuple[Proposal, bool]:
        """Record a proposal for ``plan`` on the sector's current snapshot, with its change class (decided from
        ΔΣ, never lower than ``requested_class``); (proposal, created?). ``llm``: what the LLM proposer's
        receipt records (model, prompt digest, tokens)."""
        base = self.registry.current(sector)
        if base is None:
            raise NotFoundError(f"sector {sector} has no current snapshot")
        delta = plan.delta.effective(base.triples)
        pid = proposal_id(sector, base.id, delta)
        with self.db.connection() as conn:
            existing = sql.get_proposal(conn, pid)
        if existing is not None:
            return existing, False
        now = self.clock.now_us()
        candidate = self.registry.store(derive(base, additions=delta.additions, removals=delta.removals,
                                               created_us=now, proposal_id=pid))
        author_ps = self.audit.subjects.pseudonym(author)
        base_schema, cand_schema, _overlay, _near = self._view(base, candidate.id, delta)
        klass = classify(delta, base_triples=base.triples, base_schema=base_schema,
                         changes=guard_changes(base_schema, cand_schema), rules=self.classes_for(sector),
                         requested=requested_class)
        proposal = Proposal(pid, sector, base.id, candidate.id, delta, pattern, plan.rationale, author_ps, proposer,
                            delta.cost(), now)
        draft = receipts.proposal_created(
            sector=sector, proposal_id=pid, base_id=base.id, snapshot_id=candidate.id, pattern=pattern,
            proposer=proposer, author=author_ps, cost=proposal.cost, delta_digest=delta.digest(),
            summary=delta.summary().to_json(), additions=len(delta.additions), removals=len(delta.removals),
            rationale=plan.rationale, klass=klass.to_json(), llm=llm)

        def hook(conn: Any) -> None:
            if sql.get_proposal(conn, pid) is not None:
                raise ConflictError(f"proposal {pid} exists")
            sql.insert_proposal(conn, proposal)
            sql.set_status(conn, pid, "created", None, now)
            sql.set_class(conn, pid, klass.name, klass.reason, now)

        try:
            entry = self.ledger.append(draft, hook=hook)
        except ConflictError:
            with self.db.connection() as conn:
                found = sql.get_proposal(conn, pid)
            assert found is not None
            return found, False
        return Proposal(**{**proposal.__dict__, "receipt_id": entry.id}), True

    # -- validating and executing ---------------------------------------------------------------------
    def _approvers(self, pid: str) -> list[Approver]:
        """The approvals that count: a vote of a subject whose identity was erased is void (the same person could
        otherwise vote again under a fresh pseudonym)."""
        given = [a for a in self.approvals(pid) if a["decision"] == "approve"]
        void = self.audit.subjects.erased([a["subject"] for a in given])
        return [Approver(a["subject"], frozenset(a["roles"]), a["sector"]) for a in given if a["subject"] not in void]

    def _recent(self, sector: str) -> list[Observation]:
        """The sector's recent observations for Q2 and the shadow replay, reused while no new one arrives
        (the proposals of one cycle are validated against the same recent window)."""
        last = self.reader.last_seq(sector)
        cached = self._recent_cache.get(sector)
        if cached is not None and cached[0] == last:
            return cached[1]
        observations = self.reader.recent(sector, self.policy.recent_observations)
        self._recent_cache[sector] = (last, observations)
        return observations

    def _ledger_time_problems(self) -> list[str]:
        """Q1 on the ledger: no receipt timestamped before its parent. Checked incrementally: each call reads
        only the receipts appended since the previous call (the first call in a process, the last 1,000)."""
        with self._time_lock:
            head = self.ledger.head("receipts")
            if head is None:
                return []
            after, prev_ts = self._time_checked or (max(-1, head.seq - 1000), None)
            while after < head.seq:
                page = self.ledger.entries("receipts", after_seq=after, limit=5000)
                if not page:
                    break
                for entry in page:
                    if prev_ts is not None and entry.ts_us < prev_ts:
                        return [f"receipt {entry.seq} is timestamped before its parent {entry.seq - 1}"]
                    prev_ts = entry.ts_us
                after = page[-1].seq
            self._time_checked = (after, prev_ts)
            return []

    def evaluate(self, pid: str) -> ValidationReport:
        """Run the pipeline on a proposal now and record nothing (a forced promotion's check)."""
        proposal, status = self.get(pid)
        return self._pipeline(proposal, self.clock.now_us(), status=status)

    def validate(self, pid: str) -> tuple[ValidationReport, Entry]:
        """Run the pipeline on a proposal now; record the validation receipt and the new status. A proposal in
        a final state (promoted, rejected, expired, superseded, frozen, no-op) is never validated again: its
        status does not change (:class:`ConflictError`)."""
        proposal, status = self.get(pid)
        if status.status in FINAL:
            raise ConflictError(f"proposal {pid} is {status.status}, a final state: it is not validated again "
                                "(propose the change anew)")
        now = self.clock.now_us()
        report = self._pipeline(proposal, now, status=status)
        vid = str(uuid_utils.uuid7())
        entry = self._record_validation(proposal, status, report, vid, now)
        return report, entry

    def _view(self, base: Snapshot, candidate_id: str, delta: DeltaSigma
              ) -> tuple[SectorSchema, SectorSchema, Overlay, set[str]]:
        """The base's read model and the candidate seen as base + ΔΣ: its read model and every stage look at the
        change's neighbourhood, never at the whole (possibly 100k-triple) graph again."""
        base_schema = self.registry.schema(base.id)
        overlay = Overlay.of(self._index(base.id, base.triples), delta.additions, delta.removals)
        near = neighbourhood(overlay)
        cand_schema = self._candidate_schemas.get(candidate_id)
        if cand_schema is None:
            cand_schema = incremental_schema(base_schema, overlay, candidate_id, near)
            self._candidate_schemas[candidate_id] = cand_schema
            while len(self._candidate_schemas) > 64:
                self._candidate_schemas.popitem(last=False)
        return base_schema, cand_schema, overlay, near

    def _pipeline(self, proposal: Proposal, now: int, *, status: ProposalStatus | None = None,
                  extra: Sequence[Approver] = (), change_class: str | None = None) -> ValidationReport:
        pid = proposal.id
        if status is None:
            status = self.get(pid)[1]
        base = self.registry.get(proposal.base_id)
        candidate = self.registry.get(proposal.candidate_id)
        current = self.registry.refresh(proposal.sector)
        base_schema, cand_schema, overlay, near = self._view(base, candidate.id, proposal.delta)
        rules = self.classes_for(proposal.sector)
        klass = change_class or status.change_class
        base_local = subgraph(overlay, near, candidate=False)
        cand_local = subgraph(overlay, near)
        memory_mb = overlay.memory_bytes() / (1024 * 1024)
        observations = self._recent(proposal.sector)
        with self.db.connection() as conn:
            spent = sql.promoted_cost_since(conn, proposal.sector, now - DAY_US)
        ancestry = frozenset(i.id for i in self.registry.lineage(base.id))
        inp = ValidationInput(
            proposal_id=pid, sector=proposal.sector, author=proposal.author, delta=proposal.delta, base_id=base.id,
            candidate_id=candidate.id, current_id=None if current is None else current.id,
            base_triples=base.triples, candidate_triples=candidate.triples, base_schema=base_schema,
            candidate_schema=cand_schema, ancestry=ancestry, stored_candidate_digest=candidate.content_digest,
            candidate_digest=candidate.content_digest, doctrines=self.doctrines_for(proposal.sector),
            approvers=[*self._approvers(pid), *extra], now_us=now,
            remaining_budget=max(0, self.policy.daily_change_budget - spent),
            shadow=lambda: replay(base_triples=base_local, candidate_triples=cand_local,
                                  base_schema=base_schema, candidate_schema=cand_schema, delta=proposal.delta,
                                  observations=observations, limits=self.policy.limits, memory_mb=memory_mb),
            ledger_time_problems=self._ledger_time_problems, limits=self.policy.limits, overlay=overlay, near=near,
            change_class=klass, major_approvers=rules.major_approvers,
            review_until_us=(status.held_at_us or now) + rules.review_window_s * 1_000_000)
        return validate(inp)

    def _record_validation(self, proposal: Proposal, status: ProposalStatus, report: ValidationReport, vid: str,
                           now: int) -> Entry:
        pid, candidate_id = proposal.id, proposal.candidate_id
        outcome = report.outcome
        new_status = {"approved": "approved", "rejected": "rejected", "held": "held", "no_op": "no_op"}[outcome]
        held_at = now if outcome == "held" and status.held_at_us is None else None
        draft = receipts.proposal_validated(
            sector=proposal.sector, proposal_id=pid, snapshot_id=candidate_id, validation_id=vid, outcome=outcome,
            reason=report.reason, passed=report.passed_stages, failed=report.failed_stages,
            failed_stage=report.failed_stage, warnings=report.warnings,
            pending_approvals=[p["doctrine_id"] for p in report.pending_approvals],
            version_bump=report.version_bump, irreversible=report.irreversible, duration_us=report.duration_us,
            stages=[{"name": s.name, "status": s.status, "duration_us": s.duration_us} for s in report.stages],
            klass=status.klass)
        entry = self.ledger.append(draft)

        with self.db.transaction() as conn:
            sql.insert_validation(conn, vid, pid, candidate_id, outcome, report.to_json(), entry.id, now)
            sql.set_status(conn, pid, new_status, report.reason, now, held_at_us=held_at)
        return entry

    def execute(self, pid: str, *, actor: str = LOOP_ACTOR, rebase: bool = True,
                revalidate_held: bool = True) -> Execution:
        """Validate a proposal and act on the outcome: promote, hold (with a receipt) or reject.

        ``revalidate_held=False`` (the cycle's choice) leaves a held proposal alone: nothing about it changes
        until people decide, and their decision (:meth:`decide`) validates it again.
        """
        proposal, status = self.get(pid)
        if status.status in FINAL:
            return Execution(proposal, None, status.status)
        if status.status == "held" and self._expired(status):
            return self._expire(proposal)
        if status.status == "held" and not revalidate_held:
            return Execution(proposal, None, "held")
        if rebase:
            current = self.registry.refresh(proposal.sector)
            if current is not None and current.id != proposal.base_id:
                # another change was promoted since this one was planned: rebase and validate again, rather
                # than let Q1 reject a change whose only fault is its age
                return self._rebase(proposal, Execution(proposal, None, "superseded"))
        report, entry = self.validate(pid)
        result = Execution(proposal, report, report.outcome, receipts=[entry.id])
        if report.outcome == "held":
            if status.status != "held":
                held = self.ledger.append(receipts.proposal_held(
                    sector=proposal.sector, proposal_id=pid, snapshot_id=proposal.candidate_id, reason=report.reason,
                    pending_approvals=report.pending_approvals, expires_in_s=self.policy.approval_expiry_s,
                    klass=status.klass))
                result.receipts.append(held.id)
            return result
        if report.outcome != "approved":
            return result
        try:
            move = self.registry.promote(proposal.sector, proposal.candidate_id, actor=actor,
                                         expected_current=proposal.base_id, validation_receipt_id=entry.id,
                                         reason=proposal.rationale[:4096], klass=status.klass)
        except StaleBaseError:
            if not rebase:
                raise
            return self._rebase(proposal, result)
        now = self.clock.now_us()
        with self.db.transaction() as conn:
            sql.set_status(conn, pid, "promoted", f"promoted as {proposal.candidate_id}", now)
        result.outcome = "promoted"
        result.promoted_snapshot = proposal.candidate_id
        if move.receipt is not None:
            result.receipts.append(move.receipt.id)
        return result

    def _rebase(self, proposal: Proposal, result: Execution) -> Execution:
        now = self.clock.now_us()
        plan = Plan(proposal.delta, proposal.rationale + " (rebased on the new current snapshot)")
        old_class = self.get(proposal.id)[1].change_class
        new, created = self.create(proposal.sector, plan, pattern=proposal.pattern, author=proposal.author,
                                   proposer=proposal.proposer,  # rebased, a class is still never lowered
                                   requested_class=old_class if old_class in (STANDARD, NORMAL, MAJOR) else None)
        with self.db.transaction() as conn:
            sql.set_status(conn, proposal.id, "superseded", f"rebased as {new.id}", now)
        again = self.execute(new.id, rebase=False)
        again.rebased_to = new.id
        created_receipt = [new.receipt_id] if created and new.receipt_id is not None else []
        again.receipts = result.receipts + created_receipt + again.receipts
        return again

    def _expired(self, status: ProposalStatus) -> bool:
        held = status.held_at_us
        return held is not None and self.clock.now_us() > held + self.policy.approval_expiry_s * 1_000_000

    def _expire(self, proposal: Proposal) -> Execution:
        now = self.clock.now_us()
        entry = self.ledger.append(receipts.proposal_expired(
            sector=proposal.sector, proposal_id=proposal.id, snapshot_id=proposal.candidate_id,
            expiry_s=self.policy.approval_expiry_s, klass=self.get(proposal.id)[1].klass))
        with self.db.transaction() as conn:
            sql.set_status(conn, proposal.id, "expired", "approval request expired", now)
        return Execution(proposal, None, "expired", receipts=[entry.id])

    def expire_overdue(self, sector: str) -> list[Execution]:
        out = []
        for proposal, status in self.find(sector=sector, status="held", limit=1000):
            if self._expired(status):
                out.append(self._expire(proposal))
        return out

    def release_due(self, sector: str) -> list[Execution]:
        """The loop's own promotions of changes that need no more people: ``standard`` proposals not yet
        validated or promoted, and ``major`` ones whose review window has closed (validated again, so a
        missing approver or an objection still stops them)."""
        out = []
        now = self.clock.now_us()
        for status_name in ("created", "approved", "held"):
            for proposal, status in self.find(sector=sector, status=status_name, limit=1000):
                if status_name == "held":
                    window = self.classes_for(sector).review_window_s * 1_000_000
                    if status.change_class != MAJOR or status.held_at_us is None or now < status.held_at_us + window:
                        continue
                elif status.change_class != STANDARD:
                    continue
                out.append(self.execute(proposal.id))
        return out

    # -- the emergency path ---------------------------------------------------------------------------
    def emergency(self, pid: str, *, identity: str, roles: Sequence[str], sector_attr: str | None,
                  justification: str) -> Execution:
        """An operator (the caller checked role and MFA) promotes an open proposal at once, with a justification.

        A class only adds requirements: every stage must pass and the sector's mandatory doctrines still apply
        (the operator counts as one approver of an approval doctrine; FIN-APPROVAL-001 still wants its second
        person and compliance). A ``major`` change is never an emergency. The proposal becomes ``emergency``
        and owes a post-hoc review by a distinct validator within the sector's ``emergency_review_s``.
        """
        justification = justification.strip()
        if not justification:
            raise InvalidInputError("an emergency promotion needs a justification")
        proposal, status = self.get(pid)
        operator = self.audit.subjects.pseudonym(identity)
        if status.status not in OPEN:
            raise ConflictError(f"proposal {pid} is {status.status}, not open: it cannot be promoted")
        if operator == proposal.author:
            raise ForbiddenError("the author of a proposal can neither approve nor promote it")
        if status.change_class == MAJOR:
            raise RejectedError(f"a major change is never an emergency ({status.class_reason}): it needs its "
                                "approvers and its review window")
        now = self.clock.now_us()
        me = Approver(operator, frozenset(roles), sector_attr)
        check = self._pipeline(proposal, now, status=status, extra=[me], change_class=EMERGENCY)
        if check.outcome != "approved":
            raise RejectedError(f"an emergency promotion still needs every stage and the sector's mandatory "
                                f"doctrines: {check.reason or check.outcome}")
        rules = self.classes_for(proposal.sector)
        reason = f"emergency: {justification[:1000]} (was {status.change_class or NORMAL})"
        aid = str(uuid_utils.uuid7())
        klass = {"change_class": EMERGENCY, "class_reason": reason}

        def hook(conn: Any) -> None:
            sql.set_class(conn, pid, EMERGENCY, reason, now)
            if not sql.insert_approval(conn, aid, pid, operator, list(roles), sector_attr, "approve",
                                       f"emergency: {justification[:1000]}", now):
                raise ConflictError("this subject has already decided on this proposal")

        entry = self.ledger.append(receipts.approval_recorded(
            sector=proposal.sector, proposal_id=pid, approval_id=aid, approver=operator, roles=roles,
            sector_attr=sector_attr, decision="approve", comment=f"emergency: {justification[:1000]}", at_us=now,
            klass=klass), hook=hook)
        self.audit.record(identity, "proposal.emergency", f"proposal/{pid}", "success", reason=justification[:4096],
                          sector=proposal.sector, metadata={"roles": ",".join(sorted(roles)), "receipt": entry.id})
        result = self.execute(pid, actor=identity)
        result.receipts.insert(0, entry.id)
        if result.outcome == "promoted":
            with self.db.transaction() as conn:
                sql.insert_review(conn, pid, operator, justification[:4096], now,
                                  now + rules.emergency_review_s * 1_000_000)
        return result

    def review(self, pid: str, *, identity: str, verdict: str, comment: str | None = None) -> Entry:
        """The post-hoc review of an emergency change by a validator who is neither its author nor the operator
        who promoted it (``verdict``: accepted / rejected; a rejected change is the operators' to roll back)."""
        if verdict not in ("accepted", "rejected"):
            raise InvalidInputError("a review's verdict is accepted or rejected")
        proposal, status = self.get(pid)
        review = self.review_of(pid)
        if review is None:
            raise ConflictError(f"proposal {pid} owes no review (it was not promoted as an emergency)")
        if review.reviewed_us is not None:
            raise ConflictError(f"proposal {pid} was reviewed already ({review.verdict})")
        reviewer = self.audit.subjects.pseudonym(identity)
        if reviewer in (review.operator, proposal.author):
            raise ForbiddenError("the post-hoc review is by a distinct validator: neither the author nor the operator "
                                 "who promoted the change")
        now = self.clock.now_us()

        def hook(conn: Any) -> None:
            if not sql.record_review(conn, pid, reviewer, verdict, comment, now):
                raise ConflictError(f"proposal {pid} was reviewed already")

        entry = self.ledger.append(receipts.proposal_reviewed(
            sector=proposal.sector, proposal_id=pid, snapshot_id=proposal.candidate_id, reviewer=reviewer,
            verdict=verdict, comment=comment, operator=review.operator, due_us=review.due_us, klass=status.klass),
            hook=hook)
        self.audit.record(identity, "proposal.reviewed", f"proposal/{pid}", "success", reason=comment,
                          sector=proposal.sector, metadata={"verdict": verdict, "receipt": entry.id})
        return entry

    def alert_overdue(self, sector: str) -> list[str]:
        """An ``alert.raised`` receipt, once, for each emergency change of ``sector`` whose review is overdue."""
        now = self.clock.now_us()
        with self.db.connection() as conn:
            due = sql.overdue_unalerted(conn, sector, now)
        out = []
        for review, _sector in due:
            klass = self.get(review.proposal_id)[1].klass

            def hook(conn: Any, pid: str = review.proposal_id) -> None:
                if not sql.mark_alerted(conn, pid, now):
                    raise ConflictError(f"the overdue review of {pid} was alerted already")

            try:
                entry = self.ledger.append(receipts.review_overdue_alert(
                    sector=sector, proposal_id=review.proposal_id, operator=review.operator, due_us=review.due_us,
                    klass=klass), hook=hook)
            except ConflictError:
                continue  # another replica alerted it
            out.append(entry.id)
        return out

    # -- people ---------------------------------------------------------------------------------------
    def decide(self, pid: str, *, identity: str, roles: Sequence[str], sector_attr: str | None,
               decision: str = "approve", comment: str | None = None) -> Execution:
        """An authenticated person approves or rejects a held proposal; a quorum promotes it at once."""
        proposal, status = self.get(pid)
        subject = self.audit.subjects.pseudonym(identity)
        approver = Approver(subject, frozenset(roles), sector_attr)
        resource = f"proposal/{pid}"
        now = self.clock.now_us()
        existing = [ApprovalRecord(pid, Approver(a["subject"], frozenset(a["roles"]), a["sector"]), a["decision"],
                                   a["at_us"]) for a in self.approvals(pid)]
        try:
            if status.status != "held":
                raise ConflictError(f"proposal {pid} is {status.status}, not held for approval")
            check_approval(author=proposal.author, approver=approver, decision=decision,
                           doctrines=self.doctrines_for(proposal.sector), existing=existing,
                           held_at_us=status.held_at_us or now, now_us=now,
                           expiry_s=self.policy.approval_expiry_s)
        except KnhkError as exc:
            refusal = self.ledger.append(receipts.approval_refused(
                sector=proposal.sector, proposal_id=pid, approver=subject, roles=roles, sector_attr=sector_attr,
                decision=decision, reason=exc.message, klass=status.klass))
            self.audit.record(identity, f"proposal.{'approved' if decision == 'approve' else 'rejected'}", resource,
                              "denied", reason=exc.message[:4096], sector=proposal.sector,
                              metadata={"roles": ",".join(sorted(roles)), "refusal_receipt": refusal.id})
            raise
        aid = str(uuid_utils.uuid7())
        draft = receipts.approval_recorded(
            sector=proposal.sector, proposal_id=pid, approval_id=aid, approver=subject, roles=roles,
            sector_attr=sector_attr, decision=decision, comment=comment, at_us=now, klass=status.klass)

        def hook(conn: Any) -> None:
            if not sql.insert_approval(conn, aid, pid, subject, list(roles), sector_attr, decision, comment, now):
                raise ConflictError("this subject has already decided on this proposal")

        entry = self.ledger.append(draft, hook=hook)
        self.audit.record(identity, f"proposal.{'approved' if decision == 'approve' else 'rejected'}", resource,
                          "success", reason=comment, sector=proposal.sector,
                          metadata={"roles": ",".join(sorted(roles)), "receipt": entry.id})
        if decision == "reject":
            with self.db.transaction() as conn:
                sql.set_status(conn, pid, "rejected", f"rejected by approver {subject}", now)
            self._learn(proposal, accepted=False)
            return Execution(proposal, None, "rejected", receipts=[entry.id])
        result = self.execute(pid)  # a reached quorum is promoted by the loop itself, not by the approver
        result.receipts.insert(0, entry.id)
        if result.outcome in ("promoted", "rejected"):
            self._learn(proposal, accepted=result.outcome == "promoted")
        return result

    def _learn(self, proposal: Proposal, *, accepted: bool) -> None:
        """Tell the learner how people decided on a proposal born of a detected pattern."""
        if self.on_outcome is not None and proposal.pattern:
            try:
                self.on_outcome(proposal.sector, proposal.pattern.split(":", 1)[0], accepted)
            except Exception:
                log.exception("recording the outcome of %s for learning failed", proposal.id)

    def mark_promoted(self, pid: str, reason: str = "promoted by an operator") -> None:
        """Record that an operator promoted this proposal's snapshot explicitly (again, after a rollback: it
        stays promoted)."""
        with self.db.transaction() as conn:
            found = sql.get_status(conn, pid)
            if found is not None and found.status == "promoted":
                return
            sql.set_status(conn, pid, "promoted", reason, self.clock.now_us())

    # -- erasure --------------------------------------------------------------------------------------
    def freeze_erased(self, pseudonym: str) -> list[str]:
        """After ``pseudonym``'s identity was erased: freeze their open proposals and void their votes on open
        proposals, each with a receipt (their ids are returned). Segregation of duties compares pseudonyms, and
        the person gets a fresh one when they come back; frozen work and void votes keep them from approving or
        promoting their own work, or voting twice, across the erasure."""
        now = self.clock.now_us()
        out: list[str] = []
        with self.db.connection() as conn:
            authored = sql.open_authored_by(conn, pseudonym, sorted(OPEN))
        for proposal, previous in authored:
            entry = self.ledger.append(receipts.proposal_frozen(
                sector=proposal.sector, proposal_id=proposal.id, snapshot_id=proposal.candidate_id,
                author=pseudonym, status=previous, klass=self.get(proposal.id)[1].klass))
            with self.db.transaction() as conn:
                sql.set_status(conn, proposal.id, "frozen", "its author's identity was erased", now)
            out.append(entry.id)
        with self.db.connection() as conn:
            votes = sql.open_votes_of(conn, pseudonym, sorted(OPEN))
        for approval_id, pid, sector in votes:
            out.append(self.ledger.append(receipts.approval_voided(
                sector=sector, proposal_id=pid, approval_id=approval_id, approver=pseudonym,
                klass=self.get(pid)[1].klass)).id)
        return out

    def reject_by(self, pid: str, *, identity: str, roles: Sequence[str], sector_attr: str | None,
                  comment: str | None = None) -> Execution:
        return self.decide(pid, identity=identity, roles=roles, sector_attr=sector_attr, decision="reject",
                           comment=comment)


def delta_from_json(data: Any) -> DeltaSigma:
    return DeltaSigma.from_json(data)
