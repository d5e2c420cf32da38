"""Operations on guard relaxations (SPEC §7; ``/relaxations``; ``knhk guards``): request that a guard of a sector
be off for a while, approve or reject the request, revoke it, list them. The rules are
:mod:`knhk.governance.relaxations`'; the acting principal's identity, roles and sector attribute are taken as
the other governed operations take them."""

from __future__ import annotations

from knhk.app.access import DECIDE_RELAXATION, READ_RELAXATIONS, REQUEST_RELAXATION, REVOKE_RELAXATION
from knhk.app.base import Operations
from knhk.governance.relaxations import Relaxation
from knhk.identity.rbac import Principal


class GuardOps(Operations):
    def relax_guard(self, actor: Principal, sector: str, guard_id: str, duration_s: int, reason: str) -> Relaxation:
        """Ask for ``guard_id`` to be off in ``sector`` for ``duration_s`` once its quorum approves (an immutable
        guard is refused outright)."""
        self._allow(actor, REQUEST_RELAXATION)
        self._installed(sector)
        return self.runtime.relaxations.request(sector, guard_id, duration_s, reason, identity=actor.identity)

    def decide_relaxation(self, actor: Principal, relaxation_id: str, decision: str = "approve",
                          comment: str | None = None) -> Relaxation:
        """Approve or reject a pending relaxation as ``actor`` (never its author; distinct people count)."""
        self._allow(actor, DECIDE_RELAXATION)
        return self.runtime.relaxations.decide(relaxation_id, identity=actor.identity, roles=sorted(actor.roles),
                                               sector_attr=actor.sector, decision=decision, comment=comment)

    def revoke_relaxation(self, actor: Principal, relaxation_id: str, reason: str | None = None) -> Relaxation:
        """End a relaxation now: its guard holds again at once."""
        self._allow(actor, REVOKE_RELAXATION)
        return self.runtime.relaxations.revoke(relaxation_id, identity=actor.identity, reason=reason)

    def relaxations(self, actor: Principal, *, sector: str | None = None, status: str | None = None,
                    limit: int = 100) -> list[Relaxation]:
        """Relaxation requests, newest first (after receipting what time has ended or expired)."""
        self._allow(actor, READ_RELAXATIONS)
        self.runtime.relaxations.sweep(sector)
        return self.runtime.relaxations.find(sector=sector, status=status, limit=limit)

    def relaxation(self, actor: Principal, relaxation_id: str) -> Relaxation:
        self._allow(actor, READ_RELAXATIONS)
        return self.runtime.relaxations.get(relaxation_id)
