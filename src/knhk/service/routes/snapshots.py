"""``/snapshots``: read, export and diff snapshots; promote and roll back (operators, with MFA)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from knhk.errors import ForbiddenError, InvalidInputError, NotFoundError
from knhk.service import metrics, models
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Caller, require, state_of

router = APIRouter(prefix=PREFIX, tags=["snapshots"])
#: a snapshot id may be given as ``current`` together with the sector
SectorQuery = Annotated[str | None, Query(description="The sector, when a snapshot id is given as 'current'.")]


@declare(router, "GET", "/snapshots", "snapshots:read", response_model=models.Page)
def list_snapshots(request: Request, caller: Annotated[Caller, Depends(require("snapshots:read"))],
                   sector: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   cursor: str | None = None) -> dict[str, Any]:
    """Snapshots, newest first."""
    page = state_of(request).runtime.registry.list(sector, limit, cursor)
    return {"items": [i.to_json() for i in page.items], "next_cursor": page.next_cursor}


@declare(router, "GET", "/snapshots/current", "snapshots:read", response_model=dict[str, Any])
def current(sector: str, request: Request,
            caller: Annotated[Caller, Depends(require("snapshots:read"))]) -> dict[str, Any]:
    """The sector's current snapshot."""
    snap = state_of(request).runtime.registry.refresh(sector)
    if snap is None:
        raise NotFoundError(f"sector {sector} has no current snapshot")
    return snap.info.to_json()


@declare(router, "GET", "/snapshots/{snapshot_id}", "snapshots:read", response_model=dict[str, Any])
def get(snapshot_id: str, request: Request,
        caller: Annotated[Caller, Depends(require("snapshots:read"))], sector: SectorQuery = None) -> dict[str, Any]:
    """One snapshot's metadata, with the event types and guards it declares."""
    reg = state_of(request).runtime.registry
    info = reg.info(reg.resolve(snapshot_id, sector))
    schema = reg.schema(info.id)
    return {**info.to_json(), "event_types": sorted(schema.event_types),
            "guards": [g.guard_id for g in schema.guards]}


@declare(router, "GET", "/snapshots/{snapshot_id}/export", "snapshots:read", response_class=PlainTextResponse,
         responses={200: {"content": {"text/turtle": {}, "application/n-triples": {}}}})
def export(snapshot_id: str, request: Request, caller: Annotated[Caller, Depends(require("snapshots:read"))],
           format: Literal["turtle", "ntriples"] = "turtle", full: bool = False,
           sector: SectorQuery = None) -> PlainTextResponse:
    """The snapshot as Turtle or N-Triples (``full`` adds Σ_core)."""
    reg = state_of(request).runtime.registry
    text = reg.export(reg.resolve(snapshot_id, sector), format, full)
    media = "text/turtle" if format == "turtle" else "application/n-triples"
    return PlainTextResponse(text, media_type=media)


@declare(router, "GET", "/snapshots/{a}/diff/{b}", "snapshots:read", response_model=dict[str, Any])
def diff(a: str, b: str, request: Request,
         caller: Annotated[Caller, Depends(require("snapshots:read"))], sector: SectorQuery = None) -> dict[str, Any]:
    """Triples added and removed from snapshot a to snapshot b."""
    reg = state_of(request).runtime.registry
    return reg.diff(reg.resolve(a, sector), reg.resolve(b, sector)).to_json()


@declare(router, "POST", "/snapshots/{snapshot_id}/promote", "snapshots:promote", mutating=True,
         response_model=models.PointerMove)
def promote(snapshot_id: str, body: models.PromoteIn, request: Request,
            caller: Annotated[Caller, Depends(require("snapshots:promote", mutating=True))]) -> dict[str, Any]:
    """Promote a validated child of the current snapshot (compare-and-set; 409 stale_base otherwise).

    ``force`` skips the validation receipt; only administrators (with MFA) may use it, and it is recorded.
    The author of the proposal behind the snapshot may not promote it.
    """
    rt = state_of(request).runtime
    sid = rt.registry.resolve(snapshot_id, body.sector)
    info = rt.registry.info(sid)
    if body.sector is not None and body.sector != info.sector:
        raise InvalidInputError(f"snapshot {sid} belongs to sector {info.sector}, not {body.sector}")
    resource = f"snapshot/{sid}"
    if body.force and ("administrator" not in caller.roles or not caller.principal.mfa):
        rt.audit.record(caller.identity, "snapshot.promoted", resource, "denied", sector=info.sector,
                        reason="forced promotion needs an administrator with MFA")
        raise ForbiddenError("a forced promotion needs the administrator role and multi-factor authentication")
    if info.proposal_id is not None:
        try:
            proposal, _ = rt.proposals.get(info.proposal_id)
        except NotFoundError:
            proposal = None
        if proposal is not None and proposal.author == caller.pseudonym:
            rt.audit.record(caller.identity, "snapshot.promoted", resource, "denied", sector=info.sector,
                            reason="the author of a proposal may not promote it")
            raise ForbiddenError("the author of a proposal can neither approve nor promote it")
    receipt = body.validation_receipt_id
    if receipt is None and not body.force:
        for entry in rt.ledger.entries("receipts", kind="proposal.validated", sector=info.sector, descending=True,
                                       limit=1000):
            if entry.fields["data"].get("snapshot_id") == sid and entry.fields["outcome"] == "approved":
                receipt = entry.id
                break
    move = rt.registry.promote(info.sector, sid, actor=caller.identity, validation_receipt_id=receipt,
                               force=body.force, reason=body.reason)
    if not move.noop:
        metrics.PROMOTIONS.labels(info.sector).inc()
        if info.proposal_id is not None:
            rt.proposals.mark_promoted(info.proposal_id)
    return move.to_json()


@declare(router, "POST", "/snapshots/rollback", "snapshots:rollback", mutating=True, response_model=models.PointerMove)
def rollback(body: models.RollbackIn, request: Request,
             caller: Annotated[Caller, Depends(require("snapshots:rollback", mutating=True))]) -> dict[str, Any]:
    """Move a sector back to its current snapshot's parent (an error at the root)."""
    move = state_of(request).runtime.registry.rollback(body.sector, actor=caller.identity, reason=body.reason)
    return move.to_json()
