"""Guard relaxation requests (SPEC §7): switch one guard of one sector off for a bounded time, with people.

Life cycle (every transition a receipt of the ``receipts`` log, named in :mod:`knhk.ledger.receipts`):

- ``pending`` — requested (``relaxation.requested``) by an author for a duration; an ``immutable`` guard is
  refused outright (``relaxation.refused``, 409 ``immutable``), as is a second open request for the same guard.
- each decision (``relaxation.decided``) counts distinct approvers who are not the author (segregation of duties,
  once per person, within 7 days: the rules of :func:`knhk.governance.approvals.check_approval`); a refused one is
  ``relaxation.refused``; a ``reject`` ends the request (``rejected``).
- ``granted`` (``relaxation.granted``) once the quorum of its guard's criticality is reached. Its one window
  starts when both the quorum and the minimum review time (counted from the request) are there, and lasts the
  requested duration: the guard is off for that sector only during ``[starts, ends)``, which the hot path reads
  (:meth:`RelaxationService.relaxed`), so it is restored at ``ends`` with nobody acting.
- ``revoked`` (``relaxation.revoked``) at any time before the window is over: the guard holds again at once.
- ``ended`` (``relaxation.ended``, outcome ``restored``) is receipted by the next sweep after the window;
  ``expired`` (``relaxation.expired``) when no quorum came within 7 days. All terminal; a window is single-use.

A relaxation switches off every value or rate limit of that guard id in the sector — the Σ guard and a doctrine
of the same id (ISO9001-QUALITY-001 is both) — and nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uuid_utils

from knhk.audit.log import AuditLog
from knhk.errors import ConflictError, ImmutableError, InvalidInputError, KnhkError, NotFoundError
from knhk.governance import store as sql
from knhk.governance.approvals import DEFAULT_EXPIRY_S, ApprovalRecord, check_approval
from knhk.ledger import receipts
from knhk.ledger.ledger import Ledger
from knhk.ontology.registry import SnapshotRegistry
from knhk.ontology.schema import GuardSpec
from knhk.ops.clock import Clock
from knhk.storage.database import Connection, Database
from knhk.validation.doctrines import Approver, Doctrine

log = logging.getLogger("knhk.governance")

HOUR_S = 3600


@dataclass(frozen=True)
class ReviewRule:
    """How many distinct approvers a relaxation of one criticality needs, and its minimum review time."""

    quorum: int
    min_review_s: int


#: SPEC §7: critical 3 approvals / 24 h, high 2 / 12 h, medium 1 / 1 h, low 1 / 0.
REVIEW: dict[str, ReviewRule] = {
    "critical": ReviewRule(3, 24 * HOUR_S),
    "high": ReviewRule(2, 12 * HOUR_S),
    "medium": ReviewRule(1, HOUR_S),
    "low": ReviewRule(1, 0),
}
OPEN = ("pending", "granted")
TERMINAL = ("rejected", "revoked", "ended", "expired")
CACHE_S = 1.0  # how long the hot path trusts its copy of a sector's windows (other processes' transitions)


def review_rule(criticality: str) -> ReviewRule:
    """The rule of a criticality; an unknown one is treated as critical (fail closed)."""
    return REVIEW.get(criticality, REVIEW["critical"])


@dataclass(frozen=True)
class Relaxation:
    """A request, where it stands at ``now_us``, and its decisions."""

    row: sql.RelaxationRow
    state: str  # pending | scheduled | active | rejected | revoked | ended | expired
    decisions: tuple[sql.DecisionRow, ...] = ()

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def approvals(self) -> int:
        return sum(1 for d in self.decisions if d.decision == "approve")

    def to_json(self) -> dict[str, Any]:
        r = self.row
        return {"id": r.id, "sector": r.sector, "guard_id": r.guard_id, "criticality": r.criticality,
                "snapshot_id": r.snapshot_id, "author": r.author, "reason": r.reason, "duration_s": r.duration_s,
                "quorum": r.quorum, "min_review_s": r.min_review_s, "requested_us": r.requested_us,
                "status": r.status, "state": self.state, "starts_us": r.starts_us, "ends_us": r.ends_us,
                "note": r.note, "approvals": self.approvals,
                "decisions": [{"subject": d.subject, "roles": list(d.roles), "sector": d.sector_attr,
                               "decision": d.decision, "comment": d.comment, "at_us": d.at_us}
                              for d in self.decisions]}


def state_of(row: sql.RelaxationRow, now_us: int) -> str:
    """A stored status read at ``now_us``: a granted window is scheduled, active, or over (ended)."""
    if row.status != "granted":
        return row.status
    assert row.starts_us is not None
    assert row.ends_us is not None
    if now_us < row.starts_us:
        return "scheduled"
    return "active" if now_us < row.ends_us else "ended"


class RelaxationService:
    """Requests, decisions, revocations and the sweep of guard relaxations; the windows the hot path reads."""

    def __init__(self, db: Database, ledger: Ledger, audit: AuditLog, registry: SnapshotRegistry,
                 doctrines_for: Callable[[str], Sequence[Doctrine]], clock: Clock, *, max_window_s: int,
                 expiry_s: int = DEFAULT_EXPIRY_S) -> None:
        self.db = db
        self.ledger = ledger
        self.audit = audit
        self.registry = registry
        self.doctrines_for = doctrines_for
        self.clock = clock
        self.max_window_s = max_window_s
        self.expiry_s = expiry_s
        self._windows: dict[str, tuple[float, list[tuple[str, int, int]]]] = {}
        self._lock = threading.Lock()

    # -- the hot path -------------------------------------------------------------------------------------
    def relaxed(self, sector: str, now_us: int) -> frozenset[str]:
        """The guard ids switched off in ``sector`` at ``now_us`` (read from the store at most every second;
        a store that cannot be read relaxes nothing: the guards hold)."""
        with self._lock:
            held = self._windows.get(sector)
        if held is None or time.monotonic() - held[0] > CACHE_S:
            try:
                with self.db.connection() as conn:
                    found = sql.windows(conn, sector)
            except KnhkError as exc:
                log.warning("guard relaxations of %s could not be read (%s); every guard holds", sector, exc)
                return frozenset()
            held = (time.monotonic(), found)
            with self._lock:
                self._windows[sector] = held
        return frozenset(g for g, starts, ends in held[1] if starts <= now_us < ends)

    def _forget(self, sector: str) -> None:
        with self._lock:
            self._windows.pop(sector, None)

    # -- reading ------------------------------------------------------------------------------------------
    def get(self, relaxation_id: str) -> Relaxation:
        with self.db.connection() as conn:
            row = sql.get(conn, relaxation_id)
            if row is None:
                raise NotFoundError(f"no guard relaxation {relaxation_id}")
            decisions = sql.decisions(conn, relaxation_id)
        return Relaxation(row, state_of(row, self.clock.now_us()), tuple(decisions))

    def find(self, *, sector: str | None = None, status: str | None = None, limit: int = 100) -> list[Relaxation]:
        """Requests, newest first; ``status`` filters by stored status or by state (scheduled, active)."""
        now = self.clock.now_us()
        stored = {"scheduled": "granted", "active": "granted"}.get(status or "", status)
        with self.db.connection() as conn:
            rows = sql.find(conn, sector=sector, statuses=[stored] if stored else None, limit=limit)
            out = [Relaxation(r, state_of(r, now), tuple(sql.decisions(conn, r.id))) for r in rows]
        return [r for r in out if status in (None, r.state, r.row.status)]

    # -- transitions --------------------------------------------------------------------------------------
    def _guard(self, sector: str, guard_id: str) -> tuple[GuardSpec, str]:
        current = self.registry.current(sector)
        if current is None:
            raise InvalidInputError(f"sector {sector!r} has no installed sector pack; installed: "
                                    f"{', '.join(self.registry.sectors())}")
        schema = self.registry.current_schema(sector)
        for g in schema.guards:
            if g.guard_id == guard_id:
                return g, current.id
        names = ", ".join(sorted(g.guard_id for g in schema.guards)) or "none"
        raise NotFoundError(f"sector {sector} has no guard {guard_id!r} (its guards: {names})")

    def request(self, sector: str, guard_id: str, duration_s: int, reason: str, *, identity: str) -> Relaxation:
        """Ask for ``guard_id`` to be off in ``sector`` for ``duration_s`` seconds, once approved."""
        if not reason.strip():
            raise InvalidInputError("a guard relaxation needs a reason")
        if not 1 <= duration_s <= self.max_window_s:
            raise InvalidInputError(f"a relaxation lasts 1 s to {self.max_window_s} s "
                                    f"(KNHK_RELAXATION_MAX_WINDOW_S), not {duration_s} s")
        guard, snapshot_id = self._guard(sector, guard_id)
        author = self.audit.subjects.pseudonym(identity)
        resource = f"guard/{sector}/{guard_id}"
        if guard.immutable:
            message = f"guard {guard_id} is immutable: it cannot be relaxed at all"
            refusal = self.ledger.append(receipts.relaxation_refused(
                sector=sector, relaxation_id=None, guard_id=guard_id, actor=author, action="request",
                reason=message))
            self.audit.record(identity, "guard.relaxation_requested", resource, "denied", reason=message,
                              sector=sector, metadata={"refusal_receipt": refusal.id})
            raise ImmutableError(message)
        rule = review_rule(guard.criticality)
        now = self.clock.now_us()
        rid = str(uuid_utils.uuid7())
        row = sql.RelaxationRow(rid, sector, guard_id, guard.criticality, snapshot_id, author, reason[:4096],
                                duration_s, rule.quorum, rule.min_review_s, now, "pending", None, None, None, now)

        def hook(conn: Connection) -> None:
            if sql.find(conn, sector=sector, guard_id=guard_id, statuses=OPEN, limit=1):
                raise ConflictError(f"guard {guard_id} of {sector} already has an open relaxation request; "
                                    "revoke it first")
            sql.insert(conn, row)

        entry = self.ledger.append(receipts.relaxation_requested(
            sector=sector, relaxation_id=rid, guard_id=guard_id, criticality=guard.criticality,
            snapshot_id=snapshot_id, author=author, reason=row.reason, duration_s=duration_s, quorum=rule.quorum,
            min_review_s=rule.min_review_s), hook=hook)
        self.audit.record(identity, "guard.relaxation_requested", f"relaxation/{rid}", "success", reason=row.reason,
                          sector=sector, metadata={"guard_id": guard_id, "receipt": entry.id})
        return self.get(rid)

    def decide(self, relaxation_id: str, *, identity: str, roles: Sequence[str], sector_attr: str | None,
               decision: str = "approve", comment: str | None = None) -> Relaxation:
        """A person approves or rejects a pending request; the quorum grants its window."""
        current = self.get(relaxation_id)
        row = current.row
        subject = self.audit.subjects.pseudonym(identity)
        approver = Approver(subject, frozenset(roles), sector_attr)
        resource = f"relaxation/{relaxation_id}"
        now = self.clock.now_us()
        existing = [ApprovalRecord(relaxation_id, Approver(d.subject, frozenset(d.roles), d.sector_attr), d.decision,
                                   d.at_us) for d in current.decisions]
        try:
            if row.status != "pending":
                raise ConflictError(f"guard relaxation {relaxation_id} is {current.state}, not pending approval")
            check_approval(author=row.author, approver=approver, decision=decision,
                           doctrines=self.doctrines_for(row.sector), existing=existing, held_at_us=row.requested_us,
                           now_us=now, expiry_s=self.expiry_s)
        except KnhkError as exc:
            refusal = self.ledger.append(receipts.relaxation_refused(
                sector=row.sector, relaxation_id=relaxation_id, guard_id=row.guard_id, actor=subject,
                action=decision, reason=exc.message))
            self.audit.record(identity, "guard.relaxation_decided", resource, "denied", reason=exc.message[:4096],
                              sector=row.sector, metadata={"refusal_receipt": refusal.id})
            raise
        did = str(uuid_utils.uuid7())
        count = current.approvals + (1 if decision == "approve" else 0)

        def hook(conn: Connection) -> None:
            if not sql.insert_decision(conn, sql.DecisionRow(did, relaxation_id, subject, tuple(sorted(roles)),
                                                             sector_attr, decision, comment, now)):
                raise ConflictError("this subject has already decided on this guard relaxation")
            if decision == "reject" and not sql.set_status(conn, relaxation_id, expected="pending",
                                                           status="rejected", now_us=now,
                                                           note=f"rejected by {subject}"):
                raise ConflictError(f"guard relaxation {relaxation_id} is no longer pending")

        entry = self.ledger.append(receipts.relaxation_decided(
            sector=row.sector, relaxation_id=relaxation_id, guard_id=row.guard_id, approval_id=did, approver=subject,
            roles=roles, sector_attr=sector_attr, decision=decision, comment=comment, approvals=count,
            quorum=row.quorum), hook=hook)
        self.audit.record(identity, "guard.relaxation_decided", resource, "success", reason=comment,
                          sector=row.sector, metadata={"decision": decision, "receipt": entry.id})
        if decision == "approve" and count >= row.quorum:
            self._grant(relaxation_id)
        return self.get(relaxation_id)

    def _grant(self, relaxation_id: str) -> None:
        current = self.get(relaxation_id)
        row = current.row
        now = self.clock.now_us()
        starts = max(now, row.requested_us + row.min_review_s * 1_000_000)
        ends = starts + row.duration_s * 1_000_000

        def hook(conn: Connection) -> None:
            if not sql.set_status(conn, relaxation_id, expected="pending", status="granted", now_us=now,
                                  starts_us=starts, ends_us=ends, note=f"{current.approvals} approvals"):
                raise ConflictError(f"guard relaxation {relaxation_id} was granted or closed meanwhile")

        try:
            self.ledger.append(receipts.relaxation_granted(sector=row.sector, relaxation_id=relaxation_id,
                                                           guard_id=row.guard_id, starts_us=starts, ends_us=ends,
                                                           approvals=current.approvals), hook=hook)
        except ConflictError:
            log.info("guard relaxation %s was granted by another process", relaxation_id)
        self._forget(row.sector)

    def revoke(self, relaxation_id: str, *, identity: str, reason: str | None = None) -> Relaxation:
        """End a pending or granted request now: the guard holds again at once (an ended one is refused)."""
        current = self.get(relaxation_id)
        row = current.row
        if current.state not in ("pending", "scheduled", "active"):
            raise ConflictError(f"guard relaxation {relaxation_id} is {current.state}; there is nothing to revoke")
        actor = self.audit.subjects.pseudonym(identity)
        now = self.clock.now_us()

        def hook(conn: Connection) -> None:
            if not sql.set_status(conn, relaxation_id, expected=row.status, status="revoked", now_us=now,
                                  note=f"revoked by {actor}"):
                raise ConflictError(f"guard relaxation {relaxation_id} changed meanwhile; look again")

        entry = self.ledger.append(receipts.relaxation_revoked(
            sector=row.sector, relaxation_id=relaxation_id, guard_id=row.guard_id, actor=actor, reason=reason,
            was=current.state, at_us=now), hook=hook)
        self._forget(row.sector)
        self.audit.record(identity, "guard.relaxation_revoked", f"relaxation/{relaxation_id}", "success",
                          reason=reason, sector=row.sector, metadata={"was": current.state, "receipt": entry.id})
        return self.get(relaxation_id)

    def sweep(self, sector: str | None = None) -> list[str]:
        """Receipt what time has done: windows over (``relaxation.ended``) and requests past their expiry
        (``relaxation.expired``). Returns the receipt ids. Safe to run in several processes at once."""
        now = self.clock.now_us()
        with self.db.connection() as conn:
            rows = sql.find(conn, sector=sector, statuses=OPEN, limit=10_000)
        written: list[str] = []
        for row in rows:
            if row.status == "granted" and row.ends_us is not None and now >= row.ends_us:
                draft = receipts.relaxation_ended(sector=row.sector, relaxation_id=row.id, guard_id=row.guard_id,
                                                  starts_us=row.starts_us or row.ends_us, ends_us=row.ends_us)
                status = "ended"
            elif row.status == "pending" and now > row.requested_us + self.expiry_s * 1_000_000:
                draft = receipts.relaxation_expired(sector=row.sector, relaxation_id=row.id, guard_id=row.guard_id,
                                                    expiry_s=self.expiry_s)
                status = "expired"
            else:
                continue

            def hook(conn: Connection, row: sql.RelaxationRow = row, status: str = status) -> None:
                if not sql.set_status(conn, row.id, expected=row.status, status=status, now_us=now):
                    raise ConflictError("swept by another process")

            try:
                written.append(self.ledger.append(draft, hook=hook).id)
            except ConflictError:
                continue
            self._forget(row.sector)
        return written
