"""``/proposals``: create (people as proposers), read, validate, approve or reject."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from knhk.errors import InvalidInputError
from knhk.loop.proposals import Execution
from knhk.proposals.delta import DeltaSigma
from knhk.proposals.proposer import Plan
from knhk.service import metrics, models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Caller, require, state_of

router = APIRouter(prefix=PREFIX, tags=["proposals"])


def _proposal(request: Request, pid: str, *, full: bool) -> dict[str, Any]:
    svc = state_of(request).runtime.proposals
    p, s = svc.get(pid)
    out: dict[str, Any] = {**p.to_json(with_delta=full), "status": s.status, "reason": s.reason}
    if full:
        out["validations"] = svc.validations(pid)
        out["approvals"] = svc.approvals(pid)
    return out


def execution(result: Execution) -> dict[str, Any]:
    return {"proposal_id": result.proposal.id, "outcome": result.outcome,
            "promoted_snapshot": result.promoted_snapshot, "receipts": result.receipts,
            "report": None if result.report is None else result.report.to_json()}


@declare(router, "POST", "/proposals", "proposals:create", mutating=True, response_model=models.Proposal,
         status_code=201)
def create(body: models.ProposalIn, request: Request,
           caller: Annotated[Caller, Depends(require("proposals:create", mutating=True))]) -> dict[str, Any]:
    """Propose a ΔΣ by hand. It goes through exactly the pipeline the loop's own proposals do."""
    rt = state_of(request).runtime
    if rt.registry.current(body.sector) is None:
        raise InvalidInputError(f"unknown sector {body.sector!r}")
    delta = DeltaSigma.from_json({"additions": body.additions, "removals": body.removals})
    if delta.is_empty:
        raise InvalidInputError("the ΔΣ is empty: give additions or removals")
    from knhk.ontology.rdf import normalize

    DeltaSigma.of(normalize(delta.additions, what="additions"), normalize(delta.removals, what="removals"))
    proposal, _created = rt.proposals.create(body.sector, Plan(delta, body.rationale), pattern=None,
                                             author=caller.identity, proposer="human")
    rt.audit.record(caller.identity, "proposal.created", f"proposal/{proposal.id}", "success", sector=body.sector)
    return _proposal(request, proposal.id, full=True)


@declare(router, "GET", "/proposals", "proposals:read", response_model=models.Page)
def list_proposals(request: Request, caller: Annotated[Caller, Depends(require("proposals:read"))],
                   sector: str | None = None, status: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None) -> dict[str, Any]:
    """Proposals, newest first."""
    offset = cursor_int(decode_cursor(cursor), "offset", 0)
    rows = state_of(request).runtime.proposals.find(sector=sector, status=status, limit=offset + limit + 1)
    page = rows[offset:offset + limit]
    items = [{**p.to_json(with_delta=False), "status": s.status, "reason": s.reason} for p, s in page]
    nxt = encode_cursor({"offset": offset + limit}) if len(rows) > offset + limit else None
    return {"items": items, "next_cursor": nxt}


@declare(router, "GET", "/proposals/{proposal_id}", "proposals:read", response_model=models.Proposal)
def get(proposal_id: str, request: Request,
        caller: Annotated[Caller, Depends(require("proposals:read"))]) -> dict[str, Any]:
    """A proposal with its ΔΣ, validations and approvals."""
    return _proposal(request, proposal_id, full=True)


@declare(router, "POST", "/proposals/{proposal_id}/validate", "proposals:validate", mutating=True,
         response_model=models.Execution)
def validate(proposal_id: str, request: Request,
             caller: Annotated[Caller, Depends(require("proposals:validate", mutating=True))]) -> dict[str, Any]:
    """Run the seven-stage pipeline now and record the validation (promotion is a separate step)."""
    rt = state_of(request).runtime
    proposal, _ = rt.proposals.get(proposal_id)
    report, entry = rt.proposals.validate(proposal_id)
    metrics.PROPOSALS.labels(proposal.sector, report.outcome).inc()
    rt.audit.record(caller.identity, "proposal.validated", f"proposal/{proposal_id}", "success",
                    sector=proposal.sector, metadata={"outcome": report.outcome, "receipt": entry.id})
    return {"proposal_id": proposal_id, "outcome": report.outcome, "promoted_snapshot": None,
            "receipts": [entry.id], "report": report.to_json()}


@declare(router, "POST", "/proposals/{proposal_id}/approvals", "proposals:approve", mutating=True,
         response_model=models.Execution)
def approve(proposal_id: str, body: models.ApprovalIn, request: Request,
            caller: Annotated[Caller, Depends(require("proposals:approve", mutating=True))]) -> dict[str, Any]:
    """Approve or reject a held proposal as the authenticated person (their roles and sector attribute are
    taken from the token). A reached quorum is validated again and promoted by the loop."""
    rt = state_of(request).runtime
    result = rt.proposals.decide(proposal_id, identity=caller.identity, roles=caller.roles, sector_attr=caller.sector,
                                 decision=body.decision, comment=body.comment)
    if result.outcome in ("promoted", "rejected"):
        metrics.PROPOSALS.labels(result.proposal.sector, result.outcome).inc()
    if result.outcome == "promoted":
        metrics.PROMOTIONS.labels(result.proposal.sector).inc()
    return execution(result)
