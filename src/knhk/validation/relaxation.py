"""What the pipeline does with guard changes (SPEC §6–§7), as found by :mod:`knhk.validation.guard_changes`.

- Any change to an **immutable** guard — a changed aspect, its removal, or its event type resolving to another
  wire type so it no longer covers what it covered — is a problem of the ``guards`` stage: the ΔΣ is rejected.
- A **relaxation** of any other guard is never approved without people: it adds the pending approval
  :data:`~knhk.validation.guard_changes.RELAXATION_RULE` (two distinct approvers who count toward a quorum —
  never the author, never someone breaking a segregation-of-duties doctrine), on top of whatever the sector's
  own doctrines require. Change classes (a later step) turn this into the ``major`` class.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from knhk.validation.doctrines import Doctrine, DoctrineContext, PendingApproval, qualifying_approvers
from knhk.validation.guard_changes import RELAXATION_APPROVERS, RELAXATION_RULE, GuardChanges


def immutable_problems(changes: GuardChanges) -> list[str]:
    """One sentence per change of an immutable guard."""
    out: list[str] = []
    for c in changes.immutable_broken:
        if c.aspect == "removed":
            out.append(f"immutable guard {c.guard_id} would be removed")
        elif c.aspect == "event_type":
            out.append(f"immutable guard {c.guard_id} would no longer cover {c.before} (it would apply to "
                       f"{c.after})")
        else:
            out.append(f"immutable guard {c.guard_id} would change its {c.aspect} from {c.before} to {c.after}")
    return out


def relaxation_pending(changes: GuardChanges, doctrines: Sequence[Doctrine],
                       ctx: DoctrineContext) -> PendingApproval | None:
    """The approval a relaxing ΔΣ still waits for, or None (no relaxation, or its quorum is reached)."""
    if not changes.relaxations:
        return None
    day = datetime.fromtimestamp(ctx.now_us / 1_000_000, tz=UTC).date()
    active = [d for d in doctrines if d.sector == ctx.sector and d.in_effect(day)]
    have = len(qualifying_approvers(ctx, active))
    if have >= RELAXATION_APPROVERS:
        return None
    return PendingApproval(RELAXATION_RULE, "mandatory", RELAXATION_APPROVERS, have, ())
