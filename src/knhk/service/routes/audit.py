"""``/audit`` (administrators) and ``/subjects/{id}/erasure`` (GDPR crypto-shredding, administrators)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from knhk.audit.erasure import erase_subject
from knhk.ops.clock import format_rfc3339
from knhk.service import models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Caller, require, state_of

router = APIRouter(prefix=PREFIX, tags=["audit"])


@declare(router, "GET", "/audit", "audit:read", response_model=models.Page)
def list_audit(request: Request, caller: Annotated[Caller, Depends(require("audit:read"))],
               action: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               cursor: str | None = None) -> dict[str, Any]:
    """Audit entries (actors as pseudonyms) in seq order."""
    after = cursor_int(decode_cursor(cursor), "after", -1)
    events = state_of(request).runtime.audit.events(after_seq=after, limit=limit, action=action)
    items = [{"seq": e.seq, "time": format_rfc3339(e.ts_us), "actor": e.actor, "action": e.action,
              "resource": e.resource, "outcome": e.outcome, "reason": e.reason, "metadata": dict(e.metadata),
              "id": e.id} for e in events]
    nxt = encode_cursor({"after": events[-1].seq}) if len(events) == limit else None
    return {"items": items, "next_cursor": nxt}


@declare(router, "POST", "/subjects/{subject_id}/erasure", "subjects:erase", mutating=True,
         response_model=models.Erasure)
def erasure(subject_id: str, request: Request,
            caller: Annotated[Caller, Depends(require("subjects:erase", mutating=True))]) -> dict[str, Any]:
    """Crypto-shred a subject (by pseudonym or identity): the ledger still verifies, the person can no longer
    be linked, and the erasure itself is audited by pseudonym."""
    rt = state_of(request).runtime
    report = erase_subject(rt.subjects, rt.audit, subject_id, actor=caller.identity, references=rt.references)
    return report.to_json()
