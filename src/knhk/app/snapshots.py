"""Operations on snapshots (SPEC §4, §10 ``/snapshots``; §13 ``knhk sigma``): read, lineage, diff, export; promote
(a validated child of the current snapshot, by compare-and-set), roll back, and collect unpromoted orphans.

Promotion applies one set of rules for every face: the snapshot must belong to the named sector, a forced
promotion needs the access policy's consent (administrator with MFA in the service) and is audited when refused,
the author of the proposal behind the snapshot may not promote it, and the passing validation receipt is found
when none is named. A promoted proposal's status follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knhk.app.access import COLLECT_SNAPSHOTS, PROMOTE, READ_SNAPSHOTS, ROLLBACK
from knhk.app.base import Operations
from knhk.errors import ConflictError, ForbiddenError, InvalidInputError, KnhkError, NotFoundError, RejectedError
from knhk.identity.rbac import Principal
from knhk.ledger import receipts
from knhk.ontology.diff import Diff
from knhk.ontology.registry import PointerMove, SnapshotPage
from knhk.ontology.snapshot import SnapshotInfo
from knhk.ops.clock import format_rfc3339
from knhk.proposals.model import CLOSED, Proposal

#: stages whose failure no forced promotion overrides
NEVER_FORCED = ("static", "doctrines", "guards")


@dataclass(frozen=True)
class SnapshotListing:
    """A page of snapshots and the current snapshot of each sector on it."""

    page: SnapshotPage
    current: dict[str, str | None]

    def is_current(self, info: SnapshotInfo) -> bool:
        return self.current.get(info.sector) == info.id


@dataclass(frozen=True)
class SnapshotDetails:
    """A snapshot's metadata with the event types and guards it declares."""

    info: SnapshotInfo
    event_types: list[str]
    guards: list[str]

    def to_json(self) -> dict[str, Any]:
        return {**self.info.to_json(), "event_types": self.event_types, "guards": self.guards}


@dataclass(frozen=True)
class LineageStep:
    """One snapshot of a lineage, with the pointer move that made it current (if one did)."""

    info: SnapshotInfo
    action: str | None
    at_us: int | None

    def to_json(self) -> dict[str, Any]:
        return {**self.info.to_json(), "promoted_at": None if self.at_us is None else format_rfc3339(self.at_us),
                "action": self.action}


class SnapshotOps(Operations):
    def snapshots(self, actor: Principal, *, sector: str | None = None, limit: int = 100,
                  cursor: str | None = None) -> SnapshotListing:
        """Snapshots, newest first, a page at a time."""
        self._allow(actor, READ_SNAPSHOTS)
        registry = self.runtime.registry
        page = registry.list(sector, limit, cursor)
        current = {s: (c.id if (c := registry.current(s)) else None) for s in {i.sector for i in page.items}}
        return SnapshotListing(page, current)

    def current_snapshot(self, actor: Principal, sector: str) -> SnapshotInfo:
        """The sector's current snapshot, read from the database (another replica may have moved it)."""
        self._allow(actor, READ_SNAPSHOTS)

        def read() -> SnapshotInfo:
            snap = self.runtime.registry.refresh(sector)
            if snap is None:
                raise NotFoundError(f"sector {sector} has no current snapshot")
            return snap.info

        return self.runtime.last_seen.read("current_snapshot", sector, read)

    def snapshot(self, actor: Principal, snapshot: str, *, sector: str | None = None) -> SnapshotDetails:
        """One snapshot (by id, a unique prefix of at least 6 hex digits, or ``current`` with ``sector``)."""
        self._allow(actor, READ_SNAPSHOTS)
        registry = self.runtime.registry

        def read() -> SnapshotDetails:
            info = registry.info(registry.resolve(snapshot, sector))
            schema = registry.schema(info.id)
            return SnapshotDetails(info, sorted(schema.event_types), [g.guard_id for g in schema.guards])

        return self.runtime.last_seen.read("snapshot", f"{snapshot}/{sector}", read)

    def lineage(self, actor: Principal, *, sector: str | None = None, snapshot: str | None = None) -> list[LineageStep]:
        """The ancestry of a snapshot (default: the sector's current one) back to the root, nearest first."""
        self._allow(actor, READ_SNAPSHOTS)
        registry = self.runtime.registry
        if snapshot is not None:
            start = registry.resolve(snapshot, sector)
        elif sector is not None:
            current = registry.current(sector)
            if current is None:
                raise InvalidInputError(f"sector {sector} has no current snapshot")
            start = current.id
        else:
            raise InvalidInputError("name --sector or --snapshot")
        chain = registry.lineage(start)
        history = {h.snapshot_id: h for h in registry.history(chain[0].sector)} if chain else {}
        return [LineageStep(i, history[i.id].action if i.id in history else None,
                            history[i.id].at_us if i.id in history else None) for i in chain]

    def diff(self, actor: Principal, a: str, b: str, *, sector: str | None = None) -> Diff:
        """Triples added and removed from snapshot ``a`` to snapshot ``b`` (either may be ``current``)."""
        self._allow(actor, READ_SNAPSHOTS)
        registry = self.runtime.registry
        return registry.diff(registry.resolve(a, sector), registry.resolve(b, sector))

    def export(self, actor: Principal, snapshot: str, fmt: str = "turtle", *, full: bool = False,
               sector: str | None = None) -> str:
        """Turtle or N-Triples of a snapshot (``full`` adds Σ_core; ``current`` with ``sector``)."""
        self._allow(actor, READ_SNAPSHOTS)
        registry = self.runtime.registry
        return registry.export(registry.resolve(snapshot, sector), fmt, full)

    # -- moving the pointer ---------------------------------------------------------------------------------
    def promote(self, actor: Principal, snapshot: str, *, sector: str | None = None,
                validation_receipt_id: str | None = None, force: bool = False,
                reason: str | None = None) -> PointerMove:
        """Promote a validated child of the current snapshot (compare-and-set; 409 ``stale_base`` otherwise)."""
        self._allow(actor, PROMOTE)
        rt = self.runtime
        sid = rt.registry.resolve(snapshot, sector)
        info = rt.registry.info(sid)
        if sector is not None and sector != info.sector:
            raise InvalidInputError(f"snapshot {sid} belongs to sector {info.sector}, not {sector}")
        resource = f"snapshot/{sid}"
        if force and not self.access.may_force(actor):
            rt.audit.record(actor.identity, receipts.SNAPSHOT_PROMOTED, resource, "denied", sector=info.sector,
                            reason="forced promotion needs an administrator with MFA")
            raise ForbiddenError("a forced promotion needs the administrator role and multi-factor authentication")
        proposal, status = None, None
        if info.proposal_id is not None:
            try:
                proposal, status = rt.proposals.get(info.proposal_id)
            except NotFoundError:
                proposal = None

        def deny(error: KnhkError) -> KnhkError:
            rt.audit.record(actor.identity, receipts.SNAPSHOT_PROMOTED, resource, "denied", sector=info.sector,
                            reason=error.message[:4096])
            return error

        if proposal is not None and proposal.author == self._pseudonym(actor):
            raise deny(ForbiddenError("the author of a proposal can neither approve nor promote it"))
        if proposal is not None and status is not None and status.status in CLOSED:
            raise deny(ConflictError(f"proposal {proposal.id} is {status.status}, a final state: its snapshot "
                                     "may not become current"))
        current = rt.registry.current(info.sector)
        if force and (current is None or current.id != sid):  # promoting the current snapshot is a no-op
            try:
                overridden = self._forcible(proposal)
            except KnhkError as exc:
                raise deny(exc) from None
            reason = f"{reason or 'forced'} (forced past: {overridden})" if overridden else reason
        receipt = validation_receipt_id
        if receipt is None and not force:
            receipt = self._passing_validation(info.sector, sid)
        move = rt.registry.promote(info.sector, sid, actor=actor.identity, validation_receipt_id=receipt,
                                   force=force, reason=reason)
        if not move.noop and info.proposal_id is not None:
            rt.proposals.mark_promoted(info.proposal_id)
        return move

    def _forcible(self, proposal: Proposal | None) -> str | None:
        """What a forced promotion would override (None: nothing), or the error saying it may not: ``force``
        skips the validation receipt and the operational stages (Q1–Q5 measurements, the change budget,
        compatibility), never Σ_core, a mandatory doctrine, a protected item, an immutable guard or the people
        a doctrine or the change's class asks for (the emergency class is the expedited path, with its review)."""
        if proposal is None:
            raise RejectedError("a forced promotion needs the proposal behind the snapshot")
        report = self.runtime.proposals.evaluate(proposal.id)
        if report.failed_stage in NEVER_FORCED:
            raise RejectedError(f"force never overrides the {report.failed_stage} stage: {report.reason}")
        if report.outcome == "held":
            raise RejectedError(f"force never overrides the approvals people owe: {report.reason}")
        if report.failed_stage is not None:
            return f"{report.failed_stage}: {report.reason}"
        return None

    def _passing_validation(self, sector: str, snapshot_id: str) -> str | None:
        """The newest passing validation receipt of a snapshot among the sector's last 1,000 validations."""
        for entry in self.runtime.ledger.entries(receipts.RECEIPTS, kind=receipts.PROPOSAL_VALIDATED, sector=sector,
                                                 descending=True, limit=1000):
            if receipts.validates(entry, snapshot_id):
                return entry.id
        return None

    def rollback(self, actor: Principal, sector: str, *, reason: str | None = None) -> PointerMove:
        """Move a sector back to its current snapshot's parent (an error at the root)."""
        self._allow(actor, ROLLBACK)
        return self.runtime.registry.rollback(sector, actor=actor.identity, reason=reason)

    def collect_snapshots(self, actor: Principal, *, sector: str | None = None,
                          min_age_s: int | None = None) -> list[str]:
        """Remove the content of never-promoted orphan snapshots (promoted ones are never touched)."""
        self._allow(actor, COLLECT_SNAPSHOTS)
        return self.runtime.registry.gc(sector, min_age_s=min_age_s, actor=actor.identity)
