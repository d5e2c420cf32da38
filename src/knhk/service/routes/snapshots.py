"""``/snapshots``: read, export and diff snapshots; promote and roll back (operators, with MFA)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from knhk.app import access
from knhk.service import metrics, models
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["snapshots"])
#: a snapshot id may be given as ``current`` together with the sector
SectorQuery = Annotated[str | None, Query(description="The sector, when a snapshot id is given as 'current'.")]


@declare(router, "GET", "/snapshots", access.READ_SNAPSHOTS, response_model=models.Page)
def list_snapshots(request: Request, actor: Actor, sector: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None) -> dict[str, Any]:
    """Snapshots, newest first."""
    page = application_of(request).snapshots(actor, sector=sector, limit=limit, cursor=cursor).page
    return {"items": [i.to_json() for i in page.items], "next_cursor": page.next_cursor}


@declare(router, "GET", "/snapshots/current", access.READ_SNAPSHOTS, response_model=dict[str, Any])
def current(sector: str, request: Request, actor: Actor) -> dict[str, Any]:
    """The sector's current snapshot."""
    return application_of(request).current_snapshot(actor, sector).to_json()


@declare(router, "GET", "/snapshots/{snapshot_id}", access.READ_SNAPSHOTS, response_model=dict[str, Any])
def get(snapshot_id: str, request: Request, actor: Actor, sector: SectorQuery = None) -> dict[str, Any]:
    """One snapshot's metadata, with the event types and guards it declares."""
    return application_of(request).snapshot(actor, snapshot_id, sector=sector).to_json()


@declare(router, "GET", "/snapshots/{snapshot_id}/export", access.READ_SNAPSHOTS, response_class=PlainTextResponse,
         responses={200: {"content": {"text/turtle": {}, "application/n-triples": {}}}})
def export(snapshot_id: str, request: Request, actor: Actor,
           format: Literal["turtle", "ntriples"] = "turtle", full: bool = False,
           sector: SectorQuery = None) -> PlainTextResponse:
    """The snapshot as Turtle or N-Triples (``full`` adds Σ_core)."""
    text = application_of(request).export(actor, snapshot_id, format, full=full, sector=sector)
    return PlainTextResponse(text, media_type="text/turtle" if format == "turtle" else "application/n-triples")


@declare(router, "GET", "/snapshots/{a}/diff/{b}", access.READ_SNAPSHOTS, response_model=dict[str, Any])
def diff(a: str, b: str, request: Request, actor: Actor, sector: SectorQuery = None) -> dict[str, Any]:
    """Triples added and removed from snapshot a to snapshot b."""
    return application_of(request).diff(actor, a, b, sector=sector).to_json()


@declare(router, "POST", "/snapshots/{snapshot_id}/promote", access.PROMOTE, response_model=models.PointerMove)
def promote(snapshot_id: str, body: models.PromoteIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Promote a validated child of the current snapshot (compare-and-set; 409 stale_base otherwise).

    ``force`` skips the validation receipt; only administrators (with MFA) may use it, and it is recorded.
    The author of the proposal behind the snapshot may not promote it.
    """
    move = application_of(request).promote(actor, snapshot_id, sector=body.sector,
                                           validation_receipt_id=body.validation_receipt_id, force=body.force,
                                           reason=body.reason)
    if not move.noop:
        metrics.PROMOTIONS.labels(move.sector).inc()
    return dict(move.to_json())


@declare(router, "POST", "/snapshots/rollback", access.ROLLBACK, response_model=models.PointerMove)
def rollback(body: models.RollbackIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Move a sector back to its current snapshot's parent (an error at the root)."""
    return dict(application_of(request).rollback(actor, body.sector, reason=body.reason).to_json())
