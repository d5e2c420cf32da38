"""``/patterns``: run the detectors now (read-only analysis) and list recorded ``pattern.detected`` receipts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from knhk.errors import InvalidInputError
from knhk.ops.clock import format_rfc3339
from knhk.service import models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Caller, require, state_of

router = APIRouter(prefix=PREFIX, tags=["patterns"])


@declare(router, "POST", "/patterns/detect", "patterns:detect", response_model=models.Detection)
def detect(body: models.DetectIn, request: Request,
           caller: Annotated[Caller, Depends(require("patterns:detect"))]) -> dict[str, Any]:
    """Run every detector on a sector now. Nothing is recorded: cycles record the patterns they act on."""
    rt = state_of(request).runtime
    if rt.registry.current(body.sector) is None:
        raise InvalidInputError(f"unknown sector {body.sector!r}")
    rt.catch_up(body.sector)
    now = rt.loop_clock.now_us()
    result = rt.engine.detect(body.sector, rt.registry.current_schema(body.sector), now,
                              thresholds=rt.thresholds.thresholds(body.sector))
    return {"sector": body.sector, "detected_at": format_rfc3339(result.now_us),
            "patterns": [p.to_json() for p in result.patterns], "dropped": [p.to_json() for p in result.dropped],
            "errors": [{"detector": e.detector, "error": e.error} for e in result.errors]}


@declare(router, "GET", "/patterns", "patterns:read", response_model=models.Page)
def list_patterns(request: Request, caller: Annotated[Caller, Depends(require("patterns:read"))],
                  sector: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  cursor: str | None = None) -> dict[str, Any]:
    """Patterns the loop detected (their ``pattern.detected`` receipts), newest first."""
    before = cursor_int(decode_cursor(cursor), "before", 2**62)
    entries = state_of(request).runtime.ledger.entries("receipts", kind="pattern.detected", sector=sector,
                                                       descending=True, before_seq=before, limit=limit)
    items = [{"seq": e.seq, "receipt_id": e.id, "sector": e.sector, "name": e.subject,
              "detected_at": format_rfc3339(e.ts_us), "action": e.reason, "evidence": e.evidence, "data": e.data}
             for e in entries]
    nxt = encode_cursor({"before": entries[-1].seq}) if len(entries) == limit else None
    return {"items": items, "next_cursor": nxt}
