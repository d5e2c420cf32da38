"""``/proposals``: create (people as proposers), read, validate, approve or reject."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from knhk.app import access
from knhk.service import metrics, models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["proposals"])


@declare(router, "POST", "/proposals", access.CREATE_PROPOSAL, response_model=models.Proposal, status_code=201)
def create(body: models.ProposalIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Propose a ΔΣ by hand. It goes through exactly the pipeline the loop's own proposals do."""
    return application_of(request).create_proposal(actor, body.sector, body.rationale, additions=body.additions,
                                                   removals=body.removals, change_class=body.change_class).to_json()


@declare(router, "GET", "/proposals", access.READ_PROPOSALS, response_model=models.Page)
def list_proposals(request: Request, actor: Actor, sector: str | None = None, status: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
                   overdue: bool = False) -> dict[str, Any]:
    """Proposals, newest first; ``overdue=true``: emergency changes whose post-hoc review is past due."""
    offset = cursor_int(decode_cursor(cursor), "offset", 0)
    rows = application_of(request).proposals(actor, sector=sector, status=status, limit=offset + limit + 1,
                                              overdue=overdue)
    nxt = encode_cursor({"offset": offset + limit}) if len(rows) > offset + limit else None
    return {"items": [r.to_json() for r in rows[offset:offset + limit]], "next_cursor": nxt}


@declare(router, "GET", "/proposals/{proposal_id}", access.READ_PROPOSALS, response_model=models.Proposal)
def get(proposal_id: str, request: Request, actor: Actor) -> dict[str, Any]:
    """A proposal with its ΔΣ, validations and approvals."""
    return application_of(request).proposal(actor, proposal_id).to_json()


@declare(router, "POST", "/proposals/{proposal_id}/validate", access.VALIDATE_PROPOSAL,
         response_model=models.Execution)
def validate(proposal_id: str, request: Request, actor: Actor) -> dict[str, Any]:
    """Run the seven-stage pipeline now and record the validation (promotion is a separate step)."""
    result = application_of(request).validate_proposal(actor, proposal_id)
    metrics.PROPOSALS.labels(result.proposal.sector, result.outcome).inc()
    return result.to_json()


@declare(router, "POST", "/proposals/{proposal_id}/approvals", access.DECIDE_PROPOSAL,
         response_model=models.Execution)
def approve(proposal_id: str, body: models.ApprovalIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Approve or reject a held proposal as the authenticated person (their roles and sector attribute are
    taken from the token). A reached quorum is validated again and promoted by the loop."""
    result = application_of(request).decide(actor, proposal_id, body.decision, body.comment)
    if result.outcome in ("promoted", "rejected"):
        metrics.PROPOSALS.labels(result.proposal.sector, result.outcome).inc()
    if result.outcome == "promoted":
        metrics.PROMOTIONS.labels(result.proposal.sector).inc()
    return result.to_json()


@declare(router, "POST", "/proposals/{proposal_id}/emergency", access.EMERGENCY_PROMOTE,
         response_model=models.Execution)
def emergency(proposal_id: str, body: models.EmergencyIn, request: Request, actor: Actor) -> dict[str, Any]:
    """The emergency change class: an operator with MFA promotes an open proposal at once, with a justification.
    Every stage and the sector's mandatory doctrines still apply; a major change is refused; a distinct validator
    owes a post-hoc review (``POST /proposals/{id}/reviews``) within the sector's deadline."""
    result = application_of(request).emergency_promote(actor, proposal_id, body.justification)
    if result.outcome == "promoted":
        metrics.PROMOTIONS.labels(result.proposal.sector).inc()
    return result.to_json()


@declare(router, "POST", "/proposals/{proposal_id}/reviews", access.REVIEW_PROPOSAL, status_code=201)
def review(proposal_id: str, body: models.ReviewIn, request: Request, actor: Actor) -> dict[str, Any]:
    """The post-hoc review of an emergency change by a validator who is neither its author nor its operator."""
    entry = application_of(request).review_proposal(actor, proposal_id, body.verdict, body.comment)
    return {"proposal_id": proposal_id, "verdict": body.verdict, "receipt": entry.id}
