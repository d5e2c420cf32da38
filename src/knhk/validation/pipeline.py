"""The validation pipeline (SPEC §6): seven stages in order, fail-fast, then the approval gate.

``static`` → ``invariants`` (Q1–Q5) → ``doctrines`` → ``guards`` → ``performance`` → ``rollback`` →
``compatibility``. Every stage is reported with its name, whether it passed, a message and its duration;
stages after a failure are reported as skipped. Q2, Q4 and Q5 use the measurements of the shadow replay
(:mod:`knhk.validation.shadow`). When every stage passes, doctrines that require approvals hold the proposal
until a quorum approves; otherwise it is approved. An empty or already-applied ΔΣ is ``no_op``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from knhk.errors import KnhkError
from knhk.ontology.core import CHATMAN_CONSTANT, touches_core
from knhk.ontology.incremental import Overlay, neighbourhood, subgraph
from knhk.ontology.namespaces import RDFS_DOMAIN, RDFS_RANGE, RDFS_SUBCLASS_OF, iri
from knhk.ontology.rdf import normalize
from knhk.ontology.schema import SectorSchema
from knhk.ontology.shacl import check_sigma_wellformed
from knhk.ops import telemetry
from knhk.ops.clock import format_rfc3339
from knhk.proposals.delta import DeltaSigma, Triple
from knhk.validation.classes import MAJOR, MAJOR_RULE
from knhk.validation.compatibility import dangling_references, loosened, removed_or_narrowed, version_bump
from knhk.validation.doctrines import (
    Approver,
    Doctrine,
    DoctrineContext,
    DoctrineOutcome,
    PendingApproval,
    evaluate,
    qualifying_approvers,
)
from knhk.validation.guard_changes import GuardChanges, guard_changes
from knhk.validation.relaxation import immutable_problems, relaxation_pending
from knhk.validation.shadow import ShadowLimits, ShadowResult
from knhk.validation.stages import STAGES, StageResult, ValidationReport


@dataclass
class ValidationInput:
    """Everything the pipeline looks at for one proposal."""

    proposal_id: str
    sector: str
    author: str
    delta: DeltaSigma
    base_id: str
    candidate_id: str
    current_id: str | None
    base_triples: frozenset[Triple]
    candidate_triples: frozenset[Triple]
    base_schema: SectorSchema
    candidate_schema: SectorSchema
    ancestry: frozenset[str]  # ids of the base and all its ancestors
    stored_candidate_digest: str | None  # content digest already stored under candidate_id, if any
    candidate_digest: str
    doctrines: Sequence[Doctrine]
    approvers: Sequence[Approver]
    now_us: int
    remaining_budget: int
    shadow: Callable[[], ShadowResult]
    ledger_time_problems: Callable[[], list[str]] = lambda: []
    limits: ShadowLimits = field(default_factory=ShadowLimits)
    #: the change seen through the base's index: stages then look at the change's neighbourhood only
    overlay: Overlay | None = None
    near: set[str] | None = None
    #: the proposal's change class (knhk.validation.classes): ``major`` adds its approvers and review window
    change_class: str | None = None
    major_approvers: int = 2
    review_until_us: int | None = None  # a major change is held until then, for objections


class _Run:
    def __init__(self, inp: ValidationInput) -> None:
        self.inp = inp
        if inp.overlay is not None:
            near = inp.near if inp.near is not None else neighbourhood(inp.overlay)
            self.base_local: frozenset[Triple] = subgraph(inp.overlay, near, candidate=False)
            self.cand_local: frozenset[Triple] = subgraph(inp.overlay, near)
        else:
            self.base_local, self.cand_local = inp.base_triples, inp.candidate_triples
        self.shadow_result: ShadowResult | None = None
        self.doctrine_outcome = DoctrineOutcome()
        self.narrowed: set[str] = set()
        self.loosened: set[str] = set()
        self.warnings: list[str] = []
        self._guard_changes: GuardChanges | None = None

    @property
    def guard_changes(self) -> GuardChanges:
        """What the ΔΣ does to the sector's guards (one comparison of the two read models)."""
        if self._guard_changes is None:
            self._guard_changes = guard_changes(self.inp.base_schema, self.inp.candidate_schema)
        return self._guard_changes

    def shadow(self) -> ShadowResult:
        if self.shadow_result is None:
            self.shadow_result = self.inp.shadow()
        return self.shadow_result

    # -- stages -----------------------------------------------------------------------------------------
    def static(self) -> StageResult:
        d = self.inp.delta
        blanks = [t for t in (*d.additions, *d.removals) if any(x.startswith("_:") for x in t)]
        if blanks:
            return StageResult("static", False, f"ΔΣ contains blank nodes (skolemise them): {blanks[0]}")
        try:
            normalize(d.additions, what="ΔΣ additions")
            normalize(d.removals, what="ΔΣ removals")
        except KnhkError as exc:
            return StageResult("static", False, f"ΔΣ does not parse: {exc}")
        core = touches_core([*d.additions, *d.removals])
        if core:
            return StageResult("static", False, f"ΔΣ touches the immutable Σ_core: {' '.join(core[0])}")
        missing_rm = [t for t in d.removals if t not in self.inp.base_triples]
        if missing_rm:
            return StageResult("static", False,
                               f"ΔΣ removes a triple that is not in the base: {' '.join(missing_rm[0])}")
        summary = d.summary()
        problems: list[str] = []
        preds_of: dict[str, set[str]] = {}
        for s, p, _ in self.cand_local:
            preds_of.setdefault(s, set()).add(p)
        for cls in summary.classes_added:
            if iri(RDFS_SUBCLASS_OF) not in preds_of.get(cls, set()):
                problems.append(f"new class {cls} has no superclass")
        for prop in summary.properties_added:
            preds = preds_of.get(prop, set())
            if iri(RDFS_DOMAIN) not in preds or iri(RDFS_RANGE) not in preds:
                problems.append(f"new property {prop} needs both a domain and a range")
        touched = {s for s, _, _ in (*d.additions, *d.removals)}
        problems += [p for p in check_sigma_wellformed(self.cand_local)
                     if any(t in p for t in touched) or not touched]
        if problems:
            return StageResult("static", False, "; ".join(problems[:5]), details={"problems": problems})
        return StageResult("static", True, f"ΔΣ parses; {len(d.additions)} additions, {len(d.removals)} removals; "
                                           "Σ_core untouched; new classes and properties well-formed")

    def invariants(self) -> StageResult:
        inp, lim = self.inp, self.inp.limits
        failures: list[str] = []
        details: dict[str, object] = {}
        # Q1 no retrocausation
        if inp.current_id != inp.base_id:
            failures.append(f"Q1: the base {inp.base_id[:12]} is no longer the current snapshot (stale base)")
        if inp.candidate_id in inp.ancestry:
            failures.append("Q1: the candidate is its own ancestor (the DAG would get a cycle)")
        if inp.stored_candidate_digest is not None and inp.stored_candidate_digest != inp.candidate_digest:
            failures.append("Q1: a different snapshot is already stored under the candidate id")
        time_problems = inp.ledger_time_problems()
        if time_problems:
            failures.append("Q1: " + time_problems[0])
        shadow = self.shadow()
        details["shadow"] = shadow.to_json()
        # Q2 type soundness
        if shadow.violation_rate > lim.max_violation_rate:
            failures.append(f"Q2: {shadow.violations} of {shadow.observations} recent observations "
                            f"({shadow.violation_rate:.1%}) violate Σ_new's shapes "
                            f"(limit {lim.max_violation_rate:.0%})")
        if shadow.newly_failing_rate > lim.max_violation_rate:
            failures.append(f"Q2: ΔΣ makes {shadow.newly_failing} previously conforming observations fail "
                            f"({shadow.newly_failing_rate:.1%}, limit {lim.max_violation_rate:.0%})")
        # Q3 guard preservation (Chatman constant), summed in one pass over the guards
        shared = sum(g.ticks for g in inp.candidate_schema.guards if g.hot_path and g.event_type is None)
        per_type: dict[str, int] = {}
        for g in inp.candidate_schema.guards:
            if g.hot_path and g.event_type is not None:
                per_type[g.event_type] = per_type.get(g.event_type, 0) + g.ticks
        for event_type in sorted(inp.candidate_schema.event_types):
            ticks = shared + per_type.get(event_type, 0)
            if ticks > CHATMAN_CONSTANT:
                failures.append(f"Q3: hot-path guards of {event_type} cost {ticks} ticks (limit {CHATMAN_CONSTANT})")
        # Q4 SLO compliance (shadow replay)
        if shadow.warm_p95_ms >= lim.warm_p95_ms:
            failures.append(f"Q4: shadow warm-path p95 {shadow.warm_p95_ms:.1f} ms (limit < {lim.warm_p95_ms} ms)")
        if shadow.max_guard_ticks > CHATMAN_CONSTANT:
            failures.append(f"Q4: replayed hot-path guard cost {shadow.max_guard_ticks} ticks "
                            f"(limit {CHATMAN_CONSTANT})")
        # Q5 resource bounds
        if shadow.memory_estimate_mb > lim.memory_mb:
            failures.append(f"Q5: Σ_new needs an estimated {shadow.memory_estimate_mb:.0f} MB "
                            f"(limit {lim.memory_mb} MB)")
        if shadow.replay_p99_ms > lim.replay_p99_ms:
            failures.append(f"Q5: shadow replay p99 {shadow.replay_p99_ms:.1f} ms (limit {lim.replay_p99_ms} ms)")
        if shadow.cpu_share > lim.cpu_share:
            failures.append(f"Q5: CPU share {shadow.cpu_share:.1%} (limit {lim.cpu_share:.0%})")
        if failures:
            return StageResult("invariants", False, "; ".join(failures), details=details)
        return StageResult("invariants", True,
                           f"Q1–Q5 hold: {shadow.observations} observations replayed, "
                           f"{shadow.violations} violations, warm p95 {shadow.warm_p95_ms:.2f} ms, "
                           f"max {shadow.max_guard_ticks} ticks", details=details)

    def doctrines(self) -> StageResult:
        inp = self.inp
        self.narrowed = removed_or_narrowed(inp.delta, self.base_local)
        self.loosened = loosened(inp.delta, self.base_local)
        resources: dict[str, Decimal] = {}
        for guard in inp.candidate_schema.guards:
            if guard.kind == "max_value" and guard.field is not None:
                resources[guard.field] = max(resources.get(guard.field, guard.limit), guard.limit)
        ctx = DoctrineContext(sector=inp.sector, author=inp.author, approvers=inp.approvers, now_us=inp.now_us,
                              resources=resources,
                              removed_or_narrowed=frozenset(self.narrowed | self.loosened))
        outcome = evaluate(inp.doctrines, ctx)
        pending = relaxation_pending(self.guard_changes, inp.doctrines, ctx)  # never approved without people
        if pending is not None:
            outcome.pending.append(pending)
        # a class only adds requirements: two distinct approvers besides the author (a relaxation's own pending
        # approval already asks for them)
        if inp.change_class == MAJOR and pending is None:
            active = [d for d in inp.doctrines if d.sector == inp.sector]
            have = len(qualifying_approvers(ctx, active))
            if have < inp.major_approvers:
                outcome.pending.append(PendingApproval(MAJOR_RULE, "mandatory", inp.major_approvers, have, ()))
        self.doctrine_outcome = outcome
        details = {"violations": [v.to_json() for v in outcome.violations],
                   "pending_approvals": [p.to_json() for p in outcome.pending]}
        self.warnings += [f"{v.doctrine_id} ({v.level}): {v.message}" for v in outcome.warnings + outcome.advisories]
        if outcome.blocking:
            return StageResult("doctrines", False, "; ".join(f"{v.doctrine_id}: {v.message}" for v in outcome.blocking),
                               details=details)
        parts = [f"{len([d for d in inp.doctrines if d.sector == inp.sector])} doctrine(s) evaluated"]
        if outcome.warnings:
            parts.append("warnings: " + "; ".join(f"{v.doctrine_id}: {v.message}" for v in outcome.warnings))
        if outcome.pending:
            parts.append("approval required: " + "; ".join(p.describe() for p in outcome.pending))
        return StageResult("doctrines", True, "; ".join(parts), details=details)

    def guards(self) -> StageResult:
        inp = self.inp
        profile = set(inp.base_schema.protected_classes) | set(inp.base_schema.protected_properties)
        changed = self.narrowed | self.loosened
        hit = sorted(x for x in changed if x in profile or iri(x) in profile or x.strip("<>") in profile)
        immutable = {g.iri for g in inp.base_schema.guards if g.immutable}
        # an immutable guard may be neither removed nor changed: added triples alter it as much as removed
        # ones (a second knhk:limit or knhk:hotPath value changes what the guard reads)
        touched_guards = sorted({s for s, _, _ in (*inp.delta.removals, *inp.delta.additions)
                                 if s.strip("<>") in immutable or s in immutable})
        changes = self.guard_changes
        details = {"changes": [c.to_json() for c in changes.changes],
                   "relaxations": [c.to_json() for c in changes.relaxations]}
        if hit or touched_guards or changes.immutable_broken:
            parts = [f"protected {x} would be removed or narrowed, or lose its constraints" for x in hit]
            parts += [f"immutable guard {g} would be changed or removed" for g in touched_guards]
            parts += immutable_problems(changes)
            return StageResult("guards", False, "; ".join(parts), details=details)
        message = f"{len(profile)} protected item(s) and {len(immutable)} immutable guard(s) kept"
        if changes.relaxations:
            message += f"; guard relaxation held for people: {changes.describe(changes.relaxations)}"
        return StageResult("guards", True, message, details=details)

    def performance(self) -> StageResult:
        cost = self.inp.delta.cost()
        if cost > self.inp.remaining_budget:
            return StageResult("performance", False,
                               f"change cost {cost} exceeds the remaining budget {self.inp.remaining_budget}",
                               details={"cost": cost, "remaining_budget": self.inp.remaining_budget})
        return StageResult("performance", True,
                           f"change cost {cost} within the remaining budget {self.inp.remaining_budget}",
                           details={"cost": cost, "remaining_budget": self.inp.remaining_budget})

    def rollback(self) -> StageResult:
        if self.inp.delta.removals:
            return StageResult("rollback", True, f"irreversible: ΔΣ removes {len(self.inp.delta.removals)} triple(s); "
                               "rolling back restores the parent snapshot", details={"irreversible": True})
        return StageResult("rollback", True, "reversible: additions only", details={"irreversible": False})

    def compatibility(self) -> StageResult:
        overlay = self.inp.overlay
        dangling = dangling_references(self.cand_local, None if overlay is None else overlay.has_subject)
        bump = version_bump(self.inp.delta, self.narrowed)
        if dangling:
            return StageResult("compatibility", False, "dangling references: " + ", ".join(dangling[:5]),
                               details={"dangling": dangling, "version_bump": bump})
        breaking = "breaking change (major version bump)" if bump == "major" else f"{bump} version bump"
        return StageResult("compatibility", True, f"no dangling references; {breaking}", details={"version_bump": bump})


@telemetry.traced_validation
def validate(inp: ValidationInput) -> ValidationReport:
    """Run the pipeline for one proposal and decide its outcome."""
    started = time.perf_counter_ns()
    report = ValidationReport(inp.proposal_id, inp.candidate_id, "approved")
    effective = inp.delta.effective(inp.base_triples)
    if effective.is_empty or inp.candidate_id == inp.current_id:
        report.outcome = "no_op"
        report.reason = "ΔΣ changes nothing" if effective.is_empty else "the candidate is already current"
        report.duration_us = (time.perf_counter_ns() - started) // 1000
        return report
    run = _Run(inp)
    stage_fns = [run.static, run.invariants, run.doctrines, run.guards, run.performance, run.rollback,
                 run.compatibility]
    failed: StageResult | None = None
    for name, fn in zip(STAGES, stage_fns, strict=True):
        if failed is not None:
            report.stages.append(StageResult(name, False, f"not run: stage {failed.name} failed", skipped=True))
            continue
        t0 = time.perf_counter_ns()
        try:
            result = telemetry.run_stage(name, fn)
        except KnhkError as exc:
            result = StageResult(name, False, f"stage could not complete: {exc}")
        result.duration_us = (time.perf_counter_ns() - t0) // 1000
        report.stages.append(result)
        if not result.passed:
            failed = result
    report.warnings = run.warnings
    report.irreversible = bool(inp.delta.removals)
    report.version_bump = version_bump(inp.delta, run.narrowed)
    if run.shadow_result is not None:
        report.shadow = run.shadow_result.to_json()
    report.pending_approvals = [p.to_json() for p in run.doctrine_outcome.pending]
    if failed is not None:
        report.outcome = "rejected"
        report.failed_stage = failed.name
        report.reason = failed.message
    elif run.doctrine_outcome.needs_approval:
        report.outcome = "held"
        report.reason = "; ".join(p.describe() for p in run.doctrine_outcome.pending if p.level == "mandatory")
        relaxed = run.guard_changes.relaxations
        if relaxed:
            report.reason = f"guard relaxation ({run.guard_changes.describe(relaxed)}) needs people: {report.reason}"
    elif inp.change_class == MAJOR and inp.review_until_us is not None and inp.now_us < inp.review_until_us:
        report.outcome = "held"
        report.reason = (f"major change: its review window is open until {format_rfc3339(inp.review_until_us)}; "
                         "any validator may object")
    report.duration_us = (time.perf_counter_ns() - started) // 1000
    return report
