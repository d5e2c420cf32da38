"""``/audit`` (administrators) and ``/subjects/{id}/erasure`` (GDPR crypto-shredding, administrators)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from knhk.app import access
from knhk.service import models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["audit"])


@declare(router, "GET", "/audit", access.READ_AUDIT, response_model=models.Page)
def list_audit(request: Request, actor: Actor, action: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None) -> dict[str, Any]:
    """Audit entries (actors as pseudonyms) in seq order."""
    after = cursor_int(decode_cursor(cursor), "after", -1)
    events = application_of(request).audit_events(actor, after_seq=after, limit=limit, action=action)
    nxt = encode_cursor({"after": events[-1].seq}) if len(events) == limit else None
    return {"items": [e.to_json() for e in events], "next_cursor": nxt}


@declare(router, "POST", "/subjects/{subject_id}/erasure", access.ERASE_SUBJECT, response_model=models.Erasure)
def erasure(subject_id: str, request: Request, actor: Actor) -> dict[str, Any]:
    """Crypto-shred a subject (by pseudonym or identity): the ledger still verifies, the person can no longer
    be linked, and the erasure itself is audited by pseudonym."""
    return application_of(request).erase_subject(actor, subject_id).to_json()
