"""Operations on proposals (SPEC §5, §7, §10 ``/proposals``; §13 ``knhk proposals``): create one by hand, read,
validate now, and approve or reject a held one as the acting principal (their roles and sector attribute are
the principal's: from the token in the service, from ``--approver-*`` in the CLI)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from knhk.app.access import (
    CREATE_PROPOSAL,
    DECIDE_PROPOSAL,
    EMERGENCY_PROMOTE,
    READ_PROPOSALS,
    REVIEW_PROPOSAL,
    VALIDATE_PROPOSAL,
)
from knhk.app.base import Operations
from knhk.errors import ForbiddenError, InvalidInputError
from knhk.identity.rbac import Principal
from knhk.loop.proposals import Execution
from knhk.ontology.rdf import normalize
from knhk.proof.entry import Entry
from knhk.proposals.delta import DeltaSigma
from knhk.proposals.model import Proposal, ProposalStatus
from knhk.proposals.proposer import Plan


@dataclass(frozen=True)
class ProposalDetails:
    """A proposal, where it stands, and (in full) its validations and approvals."""

    proposal: Proposal
    status: ProposalStatus
    validations: list[dict[str, Any]] | None = None
    approvals: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        full = self.validations is not None
        out: dict[str, Any] = {**self.proposal.to_json(with_delta=full), "status": self.status.status,
                               "reason": self.status.reason, "change_class": self.status.change_class,
                               "class_reason": self.status.class_reason}
        if full:
            out["validations"] = self.validations
            out["approvals"] = self.approvals
        return out


class ProposalOps(Operations):
    def _details(self, pid: str) -> ProposalDetails:
        svc = self.runtime.proposals
        proposal, status = svc.get(pid)
        return ProposalDetails(proposal, status, svc.validations(pid), svc.approvals(pid))

    def proposals(self, actor: Principal, *, sector: str | None = None, status: str | None = None,
                  limit: int = 100, overdue: bool = False) -> list[ProposalDetails]:
        """Proposals, newest first (without their ΔΣ, validations and approvals); ``overdue``: emergency changes
        whose post-hoc review is past due."""
        self._allow(actor, READ_PROPOSALS)
        return [ProposalDetails(p, s) for p, s in self.runtime.proposals.find(sector=sector, status=status,
                                                                                limit=limit, overdue=overdue)]

    def proposal(self, actor: Principal, proposal_id: str) -> ProposalDetails:
        """A proposal with its ΔΣ, validations and approvals."""
        self._allow(actor, READ_PROPOSALS)
        return self._details(self.runtime.proposals.resolve(proposal_id))

    def create_proposal(self, actor: Principal, sector: str, rationale: str, *, additions: Sequence[Sequence[str]],
                        removals: Sequence[Sequence[str]], change_class: str | None = None) -> ProposalDetails:
        """Propose a ΔΣ by hand, authored by ``actor``. It goes through exactly the pipeline the loop's own
        proposals do (and its author may neither approve nor promote it)."""
        self._allow(actor, CREATE_PROPOSAL)
        self._installed(sector)
        delta = DeltaSigma.from_json({"additions": list(additions), "removals": list(removals)})
        if delta.is_empty:
            raise InvalidInputError("the ΔΣ is empty: give additions or removals")
        DeltaSigma.of(normalize(delta.additions, what="additions"), normalize(delta.removals, what="removals"))
        rt = self.runtime
        proposal, _created = rt.proposals.create(sector, Plan(delta, rationale), pattern=None,
                                                 author=actor.identity, proposer="human",
                                                 requested_class=change_class)
        rt.audit.record(actor.identity, "proposal.created", f"proposal/{proposal.id}", "success", sector=sector)
        return self._details(proposal.id)

    def validate_proposal(self, actor: Principal, proposal_id: str) -> Execution:
        """Run the seven-stage pipeline now and record the validation (promotion is a separate step)."""
        self._allow(actor, VALIDATE_PROPOSAL)
        rt = self.runtime
        proposal_id = rt.proposals.resolve(proposal_id)
        proposal, _ = rt.proposals.get(proposal_id)
        report, entry = rt.proposals.validate(proposal_id)
        rt.audit.record(actor.identity, "proposal.validated", f"proposal/{proposal_id}", "success",
                        sector=proposal.sector, metadata={"outcome": report.outcome, "receipt": entry.id})
        return self._classed(Execution(proposal, report, report.outcome, receipts=[entry.id]))

    def _classed(self, result: Execution) -> Execution:
        result.klass = self.runtime.proposals.get(result.proposal.id)[1].klass
        return result

    def decide(self, actor: Principal, proposal_id: str, decision: str = "approve",
               comment: str | None = None) -> Execution:
        """Approve or reject a held proposal as ``actor``; a reached quorum is validated again and promoted by
        the loop itself. Refusals (segregation of duties, the author, twice, expired) are receipted and audited."""
        self._allow(actor, DECIDE_PROPOSAL)
        proposal_id = self.runtime.proposals.resolve(proposal_id)
        return self._classed(self.runtime.proposals.decide(
            proposal_id, identity=actor.identity, roles=sorted(actor.roles), sector_attr=actor.sector,
            decision=decision, comment=comment))

    def emergency_promote(self, actor: Principal, proposal_id: str, justification: str) -> Execution:
        """The emergency change class: an operator with MFA promotes an open proposal at once, with a
        justification; every stage and the sector's mandatory doctrines still apply (never for a major change),
        and a distinct validator owes a post-hoc review within the sector's deadline (docs/change-governance.md)."""
        self._allow(actor, EMERGENCY_PROMOTE)
        if not self.access.may_expedite(actor):
            self.runtime.audit.record(actor.identity, "proposal.emergency", f"proposal/{proposal_id}", "denied",
                                      reason="an emergency promotion needs the operator role with MFA")
            raise ForbiddenError("an emergency promotion needs the operator (or administrator) role and "
                                 "multi-factor authentication")
        proposal_id = self.runtime.proposals.resolve(proposal_id)
        return self._classed(self.runtime.proposals.emergency(
            proposal_id, identity=actor.identity, roles=sorted(actor.roles), sector_attr=actor.sector,
            justification=justification))

    def review_proposal(self, actor: Principal, proposal_id: str, verdict: str, comment: str | None = None) -> Entry:
        """The post-hoc review of an emergency change by a distinct validator (``accepted`` / ``rejected``)."""
        self._allow(actor, REVIEW_PROPOSAL)
        proposal_id = self.runtime.proposals.resolve(proposal_id)
        return self.runtime.proposals.review(proposal_id, identity=actor.identity, verdict=verdict, comment=comment)
