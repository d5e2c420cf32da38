"""``/guards/{guard_id}/relaxations`` and ``/relaxations``: guard relaxation requests (SPEC §7) — request, read,
approve or reject as the authenticated person, revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from knhk.app import access
from knhk.service import models
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["guards"])


@declare(router, "POST", "/guards/{guard_id}/relaxations", access.REQUEST_RELAXATION,
         response_model=models.Relaxation, status_code=201)
def request(guard_id: str, body: models.RelaxationIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Ask for a guard of a sector to be off for ``duration_s`` once its quorum approves (quorum and minimum
    review by the guard's criticality); an immutable guard is refused (409 ``immutable``)."""
    return application_of(request).relax_guard(actor, body.sector, guard_id, body.duration_s,
                                               body.reason).to_json()


@declare(router, "GET", "/relaxations", access.READ_RELAXATIONS, response_model=list[models.Relaxation])
def list_relaxations(request: Request, actor: Actor, sector: str | None = None, status: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Guard relaxations, newest first."""
    return [r.to_json() for r in application_of(request).relaxations(actor, sector=sector, status=status,
                                                                     limit=limit)]


@declare(router, "GET", "/relaxations/{relaxation_id}", access.READ_RELAXATIONS, response_model=models.Relaxation)
def get(relaxation_id: str, request: Request, actor: Actor) -> dict[str, Any]:
    """One guard relaxation with its decisions."""
    return application_of(request).relaxation(actor, relaxation_id).to_json()


@declare(router, "POST", "/relaxations/{relaxation_id}/approvals", access.DECIDE_RELAXATION,
         response_model=models.Relaxation)
def decide(relaxation_id: str, body: models.ApprovalIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Approve or reject a pending relaxation as the authenticated person (never its author)."""
    return application_of(request).decide_relaxation(actor, relaxation_id, body.decision, body.comment).to_json()


@declare(router, "POST", "/relaxations/{relaxation_id}/revoke", access.REVOKE_RELAXATION,
         response_model=models.Relaxation)
def revoke(relaxation_id: str, body: models.RevokeIn, request: Request, actor: Actor) -> dict[str, Any]:
    """End a relaxation now: the guard holds again at once."""
    return application_of(request).revoke_relaxation(actor, relaxation_id, body.reason).to_json()
