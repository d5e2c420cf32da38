"""The receipt catalogue (SPEC §1, §8): one constructor per kind of entry KNHK writes, each returning the draft.

Every entry the product appends is built here, so the kinds, their subject, outcome, evidence and ``data``
shape are written once and can be read side by side. Constructors take plain values (never the domain objects
that produced them), so the ledger stays below every concept that writes to it.

Rule for a newcomer: **a new receipt is one function here plus one line in SPEC §8** (this repository keeps
its own copy of that line in the receipt table of ``docs/architecture.md``; a test holds the table and
:data:`KINDS` equal). Reading an entry goes through the typed accessors of :class:`~knhk.proof.entry.Entry`
(``entry.data``, ``entry.outcome``, …), never ``entry.fields[...]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from knhk.proof.entry import Entry, EntryDraft

RECEIPTS = "receipts"
AUDIT = "audit"
MAX_EVIDENCE = 100  # ids listed in a pattern's receipts; the rest are counted in its data
MAX_REASON = 4096

CYCLE_STARTED = "cycle.started"
PATTERN_DETECTED = "pattern.detected"
PROPOSER_FALLBACK = "proposer.fallback"
PROPOSAL_CREATED = "proposal.created"
PROPOSAL_VALIDATED = "proposal.validated"
PROPOSAL_HELD = "proposal.held"
PROPOSAL_EXPIRED = "proposal.expired"
APPROVAL_RECORDED = "approval.recorded"
APPROVAL_REFUSED = "approval.refused"
PROPOSAL_FROZEN = "proposal.frozen"
APPROVAL_VOIDED = "approval.voided"
PROPOSAL_REVIEWED = "proposal.reviewed"
SNAPSHOT_ROOT = "snapshot.root"
SNAPSHOT_PROMOTED = "snapshot.promoted"
SNAPSHOT_ROLLED_BACK = "snapshot.rolled_back"
SNAPSHOT_COLLECTED = "snapshot.collected"
GUARD_VIOLATED = "guard.violated"
ALERT_RAISED = "alert.raised"
CYCLE_COMPLETED = "cycle.completed"
RELAXATION_REQUESTED = "relaxation.requested"
RELAXATION_DECIDED = "relaxation.decided"
RELAXATION_REFUSED = "relaxation.refused"
RELAXATION_GRANTED = "relaxation.granted"
RELAXATION_REVOKED = "relaxation.revoked"
RELAXATION_ENDED = "relaxation.ended"
RELAXATION_EXPIRED = "relaxation.expired"
OBSERVATIONS_ARCHIVED = "observations.archived"

#: Every kind of the ``receipts`` log, in the order a cycle writes them (the audit log's kinds are actions).
KINDS: tuple[str, ...] = (
    CYCLE_STARTED, PATTERN_DETECTED, PROPOSER_FALLBACK, PROPOSAL_CREATED, PROPOSAL_VALIDATED, PROPOSAL_HELD,
    PROPOSAL_EXPIRED,
    APPROVAL_RECORDED, APPROVAL_REFUSED, PROPOSAL_FROZEN, APPROVAL_VOIDED, PROPOSAL_REVIEWED, SNAPSHOT_ROOT,
    SNAPSHOT_PROMOTED,
    SNAPSHOT_ROLLED_BACK, SNAPSHOT_COLLECTED, GUARD_VIOLATED, ALERT_RAISED, CYCLE_COMPLETED,
    RELAXATION_REQUESTED, RELAXATION_DECIDED, RELAXATION_REFUSED, RELAXATION_GRANTED, RELAXATION_REVOKED,
    RELAXATION_ENDED, RELAXATION_EXPIRED, OBSERVATIONS_ARCHIVED,
)


# Actions of the ``audit`` log that readers look for by name (the audit log's kinds are actions; its entries are
# built by :func:`audit_event`). A backup is vouched for by the running system's signed log: ``backup.created``
# records the manifest's digest when a backup is taken, ``backup.restored`` in the restored store when it is
# restored (knhk.backup checks a backup's manifest against them).
BACKUP_CREATED = "backup.created"
BACKUP_RESTORED = "backup.restored"


def _reason(text: str | None) -> str | None:
    return None if text is None else text[:MAX_REASON]


# -- the cycle --------------------------------------------------------------------------------------------
def cycle_started(*, sector: str, cycle_id: str, at_us: int) -> EntryDraft:
    return EntryDraft(log=RECEIPTS, kind=CYCLE_STARTED, sector=sector, subject=cycle_id, outcome="started",
                      data={"cycle_id": cycle_id, "at_us": at_us})


def pattern_detected(*, sector: str, cycle_id: str, name: str, action: str, evidence: Sequence[str],
                     data: Mapping[str, Any], commitment: Mapping[str, Any] | None = None) -> EntryDraft:
    """``data``: the pattern's own receipt data (name, kind, confidence, details); ``evidence``: the sample of
    at most 100 ids its ``commitment`` (:mod:`knhk.proof.evidence`: count, truncation, Merkle root over every
    observation) stands for."""
    return EntryDraft(log=RECEIPTS, kind=PATTERN_DETECTED, sector=sector, subject=name, outcome="detected",
                      reason=action, evidence=list(evidence[-MAX_EVIDENCE:]),
                      data={"cycle_id": cycle_id, **data, **(commitment or {})})


def pattern_alert(*, sector: str, cycle_id: str, pattern: str, level: str, action: str,
                  evidence: Sequence[str], commitment: Mapping[str, Any] | None = None) -> EntryDraft:
    """``alert.raised`` for a detected pattern that calls for one (error spike, silence); evidence and
    commitment as its ``pattern.detected``."""
    return EntryDraft(log=RECEIPTS, kind=ALERT_RAISED, sector=sector, subject=pattern, outcome=level,
                      reason=action, evidence=list(evidence[-MAX_EVIDENCE:]),
                      data={"cycle_id": cycle_id, "pattern": pattern, "level": level, **(commitment or {})})


def cycle_completed(*, sector: str, cycle_id: str, outcome: str, error: str | None, counts: Mapping[str, int],
                    duration_us: int, receipts: int) -> EntryDraft:
    """``receipts``: how many receipts the cycle wrote, this one included."""
    return EntryDraft(log=RECEIPTS, kind=CYCLE_COMPLETED, sector=sector, subject=cycle_id, outcome=outcome,
                      reason=error, data={"cycle_id": cycle_id, "counts": dict(counts), "duration_us": duration_us,
                                          "receipts": receipts})


# -- proposals --------------------------------------------------------------------------------------------
def proposal_created(*, sector: str, proposal_id: str, base_id: str, snapshot_id: str, pattern: str | None,
                     proposer: str, author: str, cost: int, delta_digest: str, summary: Mapping[str, Any],
                     additions: int, removals: int, rationale: str,
        klass: Mapping[str, str] | None = None, llm: Mapping[str, Any] | None = None) -> EntryDraft:
    """``llm`` (proposer ``llm`` only): model, prompt_digest (SHA-256 of the canonical request), response_model,
    prompt_tokens, completion_tokens, fenced."""
    return EntryDraft(log=RECEIPTS, kind=PROPOSAL_CREATED, sector=sector, subject=proposal_id, outcome="created",
                      reason=_reason(rationale), evidence=[pattern] if pattern else [],
                      data={**(klass or {}),
                            "proposal_id": proposal_id, "base_snapshot_id": base_id, "snapshot_id": snapshot_id,
                            "pattern": pattern, "proposer": proposer, "author": author, "cost": cost,
                            "delta_digest": delta_digest, "summary": dict(summary), "additions": additions,
                            "removals": removals, **({"llm": dict(llm)} if llm is not None else {})})


def proposer_fallback(*, sector: str, cycle_id: str, pattern: str, reason: str, message: str, model: str,
                      prompt_digest: str | None, details: Mapping[str, Any] | None = None) -> EntryDraft:
    """The LLM proposer gave no usable ΔΣ for ``pattern`` (``reason``: a code of knhk.proposals.llm.REASONS);
    the rule proposer plans instead."""
    return EntryDraft(log=RECEIPTS, kind=PROPOSER_FALLBACK, sector=sector, subject=pattern, outcome=reason,
                      reason=_reason(message),
                      data={"cycle_id": cycle_id, "pattern": pattern, "reason": reason, "model": model,
                            "prompt_digest": prompt_digest, "fallback": "rule", **dict(details or {})})


def proposal_validated(*, sector: str, proposal_id: str, snapshot_id: str, validation_id: str, outcome: str,
                       reason: str | None, passed: Sequence[str], failed: Sequence[str], failed_stage: str | None,
                       warnings: Sequence[str], pending_approvals: Sequence[str], version_bump: str,
                       irreversible: bool, duration_us: int, stages: Sequence[Mapping[str, Any]],
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    """``outcome``: approved, rejected, held or no_op; ``stages``: name, status and duration of each stage."""
    return EntryDraft(log=RECEIPTS, kind=PROPOSAL_VALIDATED, sector=sector, subject=proposal_id, outcome=outcome,
                      reason=_reason(reason or "all stages passed"),
                      data={**(klass or {}),
                            "proposal_id": proposal_id, "snapshot_id": snapshot_id, "validation_id": validation_id,
                            "passed": list(passed), "failed": list(failed), "failed_stage": failed_stage,
                            "warnings": list(warnings[:20]), "pending_approvals": list(pending_approvals),
                            "version_bump": version_bump, "irreversible": irreversible, "duration_us": duration_us,
                            "stages": [dict(s) for s in stages]})


def proposal_held(*, sector: str, proposal_id: str, snapshot_id: str, reason: str | None,
                  pending_approvals: Sequence[Mapping[str, Any]], expires_in_s: int,
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    return EntryDraft(log=RECEIPTS, kind=PROPOSAL_HELD, sector=sector, subject=proposal_id, outcome="held",
                      reason=_reason(reason or "awaiting approval"),
                      data={**(klass or {}), "proposal_id": proposal_id, "snapshot_id": snapshot_id,
                            "pending_approvals": [dict(p) for p in pending_approvals], "expires_in_s": expires_in_s})


def proposal_expired(*, sector: str, proposal_id: str, snapshot_id: str, expiry_s: int,
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    return EntryDraft(log=RECEIPTS, kind=PROPOSAL_EXPIRED, sector=sector, subject=proposal_id, outcome="expired",
                      reason=f"no quorum within {expiry_s // 86400} days",
                      data={**(klass or {}), "proposal_id": proposal_id, "snapshot_id": snapshot_id})


def approval_recorded(*, sector: str, proposal_id: str, approval_id: str, approver: str, roles: Sequence[str],
                      sector_attr: str | None, decision: str, comment: str | None, at_us: int,
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    """``approver``: the pseudonym; ``outcome``: the decision (approve or reject)."""
    return EntryDraft(log=RECEIPTS, kind=APPROVAL_RECORDED, sector=sector, subject=proposal_id, outcome=decision,
                      reason=comment,
                      data={**(klass or {}),
                            "proposal_id": proposal_id, "approval_id": approval_id, "approver": approver,
                            "roles": sorted(roles), "sector_attr": sector_attr, "decision": decision, "at_us": at_us})


def approval_refused(*, sector: str, proposal_id: str, approver: str, roles: Sequence[str],
                     sector_attr: str | None, decision: str, reason: str,
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    return EntryDraft(log=RECEIPTS, kind=APPROVAL_REFUSED, sector=sector, subject=proposal_id, outcome="refused",
                      reason=_reason(reason),
                      data={**(klass or {}), "proposal_id": proposal_id, "approver": approver, "roles": sorted(roles),
                            "sector_attr": sector_attr, "decision": decision})


def proposal_frozen(*, sector: str, proposal_id: str, snapshot_id: str, author: str, status: str,
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    """An open proposal whose author's identity was erased: nobody can tell any more whether an approver or
    promoter is its author, so it never moves again (``status``: where it stood)."""
    return EntryDraft(log=RECEIPTS, kind=PROPOSAL_FROZEN, sector=sector, subject=proposal_id, outcome="frozen",
                      reason="its author's identity was erased; open work of an erased subject is frozen",
                      data={**(klass or {}), "proposal_id": proposal_id, "snapshot_id": snapshot_id, "author": author,
                            "previous_status": status})


def approval_voided(*, sector: str, proposal_id: str, approval_id: str, approver: str,
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    """A vote on an open proposal by a subject whose identity was erased: it no longer counts (the same person
    could otherwise vote again under a fresh pseudonym)."""
    return EntryDraft(log=RECEIPTS, kind=APPROVAL_VOIDED, sector=sector, subject=proposal_id, outcome="void",
                      reason="the approver's identity was erased; their vote no longer counts",
                      data={**(klass or {}),
                            "proposal_id": proposal_id, "approval_id": approval_id, "approver": approver})


def proposal_reviewed(*, sector: str, proposal_id: str, snapshot_id: str, reviewer: str, verdict: str,
                      comment: str | None, operator: str, due_us: int, klass: Mapping[str, str] | None = None
                      ) -> EntryDraft:
    """The post-hoc review of an emergency change by a distinct validator (``verdict``: accepted / rejected; a
    rejected one is for the operators to roll back)."""
    return EntryDraft(log=RECEIPTS, kind=PROPOSAL_REVIEWED, sector=sector, subject=proposal_id, outcome=verdict,
                      reason=_reason(comment or f"emergency change {verdict} on review"),
                      data={**(klass or {}), "proposal_id": proposal_id, "snapshot_id": snapshot_id,
                            "reviewer": reviewer, "operator": operator, "due_us": due_us})


def review_overdue_alert(*, sector: str, proposal_id: str, operator: str, due_us: int,
                         klass: Mapping[str, str] | None = None) -> EntryDraft:
    """``alert.raised`` (``source``: review) for an emergency change whose post-hoc review is overdue."""
    return EntryDraft(log=RECEIPTS, kind=ALERT_RAISED, sector=sector, subject=proposal_id, outcome="warning",
                      reason="the post-hoc review of an emergency change is overdue",
                      data={**(klass or {}), "level": "warning", "source": "review", "proposal_id": proposal_id,
                            "operator": operator, "due_us": due_us})


# -- snapshots --------------------------------------------------------------------------------------------
def snapshot_root(*, sector: str, snapshot_id: str, content_digest: str, triple_count: int) -> EntryDraft:
    return EntryDraft(log=RECEIPTS, kind=SNAPSHOT_ROOT, sector=sector, subject=snapshot_id,
                      data={"snapshot_id": snapshot_id, "content_digest": content_digest,
                            "triple_count": triple_count, "version": 0})


def pointer_moved(*, action: str, sector: str, snapshot_id: str, previous: str, version: int, forced: bool,
                  content_digest: str, validation_receipt_id: str | None, reason: str | None,
        klass: Mapping[str, str] | None = None) -> EntryDraft:
    """``snapshot.promoted`` (action ``promote``) or ``snapshot.rolled_back`` (``rollback``)."""
    data: dict[str, Any] = {"snapshot_id": snapshot_id, "previous": previous, "version": version,
                            "forced": forced, "content_digest": content_digest}
    data.update(klass or {})
    if validation_receipt_id is not None:
        data["validation_receipt_id"] = validation_receipt_id
    return EntryDraft(log=RECEIPTS, kind=pointer_kind(action), sector=sector, subject=snapshot_id,
                      outcome="forced" if forced else "ok", reason=reason, data=data)


def pointer_kind(action: str) -> str:
    """The receipt kind of a pointer move."""
    return SNAPSHOT_PROMOTED if action == "promote" else SNAPSHOT_ROLLED_BACK


def snapshot_collected(*, sector: str, collected: Sequence[str], min_age_s: int) -> EntryDraft:
    return EntryDraft(log=RECEIPTS, kind=SNAPSHOT_COLLECTED, sector=sector,
                      data={"collected": list(collected), "min_age_s": min_age_s})


# -- observations -----------------------------------------------------------------------------------------
def guard_violated(*, sector: str, observation_id: str, reason: str, data: Mapping[str, Any],
                   commitment: Mapping[str, Any] | None = None) -> EntryDraft:
    """``data``: the violation (guard id, kind, field, value, limit, event type, criticality, ``unreadable``);
    ``commitment``: to the observation's content (:mod:`knhk.proof.evidence`)."""
    return EntryDraft(log=RECEIPTS, kind=GUARD_VIOLATED, sector=sector, subject=observation_id, outcome="violated",
                      reason=reason, evidence=[observation_id], data={**data, **(commitment or {})})


def guard_alert(*, sector: str, observation_id: str, level: str, reason: str, guard_id: str, criticality: str,
                event_type: str, commitment: Mapping[str, Any] | None = None) -> EntryDraft:
    """``alert.raised`` for a guard violation (``source``: guard)."""
    return EntryDraft(log=RECEIPTS, kind=ALERT_RAISED, sector=sector, subject=observation_id, outcome=level,
                      reason=reason, evidence=[observation_id],
                      data={"level": level, "source": "guard", "guard_id": guard_id, "criticality": criticality,
                            "event_type": event_type, **(commitment or {})})


# -- retention (SPEC §11) -----------------------------------------------------------------------------
def observations_archived(*, segment: str, period: str, count: int, first_seq: int | None, last_seq: int | None,
                          lo_us: int, hi_us: int, content_root: str, rows_root: str, archive_sha256: str,
                          manifest_sha256: str) -> EntryDraft:
    """A month of observations archived (knhk.observations.retention) before its partition is dropped:
    ``manifest_sha256`` is the digest of the signed segment manifest; ``content_root`` the RFC 9162 root over
    its observations' evidence leaves in seq order; ``rows_root`` over the archive's lines."""
    return EntryDraft(log=RECEIPTS, kind=OBSERVATIONS_ARCHIVED, subject=segment, outcome="archived",
                      reason=f"{count} observation(s) of {period} archived after the retention",
                      data={"segment": segment, "period": period, "count": count, "first_seq": first_seq,
                            "last_seq": last_seq, "lo_us": lo_us, "hi_us": hi_us, "content_root": content_root,
                            "rows_root": rows_root, "archive_sha256": archive_sha256,
                            "manifest_sha256": manifest_sha256})


# -- guard relaxations (SPEC §7) ---------------------------------------------------------------------------
def relaxation_requested(*, sector: str, relaxation_id: str, guard_id: str, criticality: str, snapshot_id: str,
                         author: str, reason: str, duration_s: int, quorum: int, min_review_s: int) -> EntryDraft:
    """A request to switch ``guard_id`` off in ``sector`` for ``duration_s``; ``author``: the pseudonym."""
    return EntryDraft(log=RECEIPTS, kind=RELAXATION_REQUESTED, sector=sector, subject=relaxation_id,
                      outcome="requested", reason=_reason(reason),
                      data={"relaxation_id": relaxation_id, "guard_id": guard_id, "criticality": criticality,
                            "snapshot_id": snapshot_id, "author": author, "duration_s": duration_s,
                            "quorum": quorum, "min_review_s": min_review_s})


def relaxation_decided(*, sector: str, relaxation_id: str, guard_id: str, approval_id: str, approver: str,
                       roles: Sequence[str], sector_attr: str | None, decision: str, comment: str | None,
                       approvals: int, quorum: int) -> EntryDraft:
    """A person's decision on a pending relaxation (``outcome``: approve or reject; a reject ends the request);
    ``approvals``: the distinct approvals counted so far, this one included."""
    return EntryDraft(log=RECEIPTS, kind=RELAXATION_DECIDED, sector=sector, subject=relaxation_id,
                      outcome=decision, reason=_reason(comment),
                      data={"relaxation_id": relaxation_id, "guard_id": guard_id, "approval_id": approval_id,
                            "approver": approver, "roles": sorted(roles), "sector_attr": sector_attr,
                            "decision": decision, "approvals": approvals, "quorum": quorum})


def relaxation_refused(*, sector: str, relaxation_id: str | None, guard_id: str, actor: str, action: str,
                       reason: str) -> EntryDraft:
    """A refused request (an immutable guard) or decision (the author, twice, segregation of duties, expired)."""
    return EntryDraft(log=RECEIPTS, kind=RELAXATION_REFUSED, sector=sector, subject=relaxation_id or guard_id,
                      outcome="refused", reason=_reason(reason),
                      data={"relaxation_id": relaxation_id, "guard_id": guard_id, "actor": actor, "action": action})


def relaxation_granted(*, sector: str, relaxation_id: str, guard_id: str, starts_us: int, ends_us: int,
                       approvals: int) -> EntryDraft:
    """The quorum is reached: the guard is off in ``sector`` during ``[starts_us, ends_us)`` (once)."""
    return EntryDraft(log=RECEIPTS, kind=RELAXATION_GRANTED, sector=sector, subject=relaxation_id, outcome="granted",
                      reason=f"guard {guard_id} off from {starts_us} to {ends_us} (µs since the epoch)",
                      data={"relaxation_id": relaxation_id, "guard_id": guard_id, "starts_us": starts_us,
                            "ends_us": ends_us, "approvals": approvals})


def relaxation_revoked(*, sector: str, relaxation_id: str, guard_id: str, actor: str, reason: str | None,
                       was: str, at_us: int) -> EntryDraft:
    """Revoked while ``was`` (pending, scheduled or active): the guard holds again from ``at_us``."""
    return EntryDraft(log=RECEIPTS, kind=RELAXATION_REVOKED, sector=sector, subject=relaxation_id, outcome="revoked",
                      reason=_reason(reason),
                      data={"relaxation_id": relaxation_id, "guard_id": guard_id, "actor": actor, "was": was,
                            "at_us": at_us})


def relaxation_ended(*, sector: str, relaxation_id: str, guard_id: str, starts_us: int, ends_us: int) -> EntryDraft:
    """The window is over and the guard is restored (it held again from ``ends_us``; this receipt may follow)."""
    return EntryDraft(log=RECEIPTS, kind=RELAXATION_ENDED, sector=sector, subject=relaxation_id, outcome="restored",
                      reason=f"guard {guard_id} restored at the end of its window",
                      data={"relaxation_id": relaxation_id, "guard_id": guard_id, "starts_us": starts_us,
                            "ends_us": ends_us})


def relaxation_expired(*, sector: str, relaxation_id: str, guard_id: str, expiry_s: int) -> EntryDraft:
    """A pending request found no quorum within ``expiry_s``: it ends unused."""
    return EntryDraft(log=RECEIPTS, kind=RELAXATION_EXPIRED, sector=sector, subject=relaxation_id, outcome="expired",
                      reason=f"no quorum within {expiry_s // 86400} days",
                      data={"relaxation_id": relaxation_id, "guard_id": guard_id})


# -- the audit log ----------------------------------------------------------------------------------------
def audit_event(*, action: str, resource: str, outcome: str, reason: str | None, metadata: Mapping[str, Any],
                sector: str | None, actor: str | None = None) -> EntryDraft:
    """An ``audit`` log entry: ``kind`` = the action, ``subject`` = the actor's pseudonym (never an identity)."""
    return EntryDraft(log=AUDIT, kind=action, sector=sector, subject=actor, outcome=outcome, reason=reason,
                      data={"resource": resource, "metadata": dict(metadata)})


# -- reading ----------------------------------------------------------------------------------------------
def validates(entry: Entry, snapshot_id: str) -> bool:
    """Is ``entry`` a passing ``proposal.validated`` receipt for ``snapshot_id``?"""
    return (entry.log == RECEIPTS and entry.kind == PROPOSAL_VALIDATED and entry.outcome == "approved"
            and entry.data.get("snapshot_id") == snapshot_id)
