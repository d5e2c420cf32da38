"""``/patterns``: run the detectors now (read-only analysis) and list recorded ``pattern.detected`` receipts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from knhk.app import access
from knhk.ops.clock import format_rfc3339
from knhk.service import models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["patterns"])


@declare(router, "POST", "/patterns/detect", access.DETECT, response_model=models.Detection)
def detect(body: models.DetectIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Run every detector on a sector now. Nothing is recorded: cycles record the patterns they act on."""
    result = application_of(request).detect(actor, body.sector)
    return {"sector": body.sector, "detected_at": format_rfc3339(result.now_us),
            "patterns": [p.to_json() for p in result.patterns], "dropped": [p.to_json() for p in result.dropped],
            "errors": [{"detector": e.detector, "error": e.error} for e in result.errors]}


@declare(router, "GET", "/patterns", access.READ_PATTERNS, response_model=models.Page)
def list_patterns(request: Request, actor: Actor, sector: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None) -> dict[str, Any]:
    """Patterns the loop detected (their ``pattern.detected`` receipts), newest first."""
    before = cursor_int(decode_cursor(cursor), "before", 2**62)
    entries = application_of(request).patterns(actor, sector=sector, before_seq=before, limit=limit)
    items = [{"seq": e.seq, "receipt_id": e.id, "sector": e.sector, "name": e.subject,
              "detected_at": format_rfc3339(e.ts_us), "action": e.reason, "evidence": e.evidence, "data": e.data}
             for e in entries]
    nxt = encode_cursor({"before": entries[-1].seq}) if len(entries) == limit else None
    return {"items": items, "next_cursor": nxt}
