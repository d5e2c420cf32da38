"""Approvals of held proposals (SPEC §7): who may approve, when, and whether a quorum is reached.

An approval binds a subject (pseudonym), the roles and sector attribute they acted with, and the time. It is
refused when the approver is the proposal's author, holds two roles of one incompatible set of a mandatory
segregation-of-duties doctrine in effect, has already decided on this proposal, or arrives after the request expired
(default 7 days after the proposal was held). Refusals are errors the caller audits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from knhk.errors import ConflictError, ForbiddenError
from knhk.validation.doctrines import Approver, Doctrine, incompatible_roles

DEFAULT_EXPIRY_S = 7 * 24 * 3600
DECISIONS = ("approve", "reject")


class ApprovalExpiredError(ConflictError):
    """The approval request is past its expiry."""

    code = "expired"


@dataclass(frozen=True)
class ApprovalRecord:
    proposal_id: str
    approver: Approver
    decision: str
    at_us: int
    receipt_id: str | None = None
    comment: str | None = None


def check_approval(*, author: str, approver: Approver, decision: str, doctrines: Sequence[Doctrine],
                   existing: Sequence[ApprovalRecord], held_at_us: int, now_us: int,
                   expiry_s: int = DEFAULT_EXPIRY_S) -> None:
    """Raise the reason an approval must be refused, or return when it may be recorded."""
    if decision not in DECISIONS:
        raise ConflictError(f"decision must be one of {', '.join(DECISIONS)}")
    if approver.subject == author:
        raise ForbiddenError("the author of a proposal can neither approve nor promote it")
    today = datetime.fromtimestamp(now_us / 1_000_000, tz=UTC).date()
    for d in doctrines:
        if d.type == "segregation_of_duties" and d.level == "mandatory" and d.in_effect(today):
            clash = incompatible_roles(approver.roles, d.params["incompatible"])
            if clash:
                raise ForbiddenError(
                    f"{d.id}: one person may not act as {' and '.join(clash[0])}; approval refused")
    if any(r.approver.subject == approver.subject for r in existing):
        raise ConflictError("this subject has already decided on this proposal; the same person twice is not a quorum")
    if now_us > held_at_us + expiry_s * 1_000_000:
        raise ApprovalExpiredError(f"the approval request expired {expiry_s // 86400} days after the proposal was held")
