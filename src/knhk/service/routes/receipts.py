"""``/receipts``: the ledger, its proofs and checkpoints (read-only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from knhk.app import access
from knhk.service import models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["receipts"])
Log = Literal["receipts", "audit"]
MAX_SEQ = 2**53 - 1
Seq = Annotated[int, Path(ge=0, le=MAX_SEQ, description="An entry's position in its log.")]


@declare(router, "GET", "/receipts", access.READ_RECEIPTS, response_model=models.Page)
def list_receipts(request: Request, actor: Actor, kind: str | None = None, sector: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None) -> dict[str, Any]:
    """Receipts (loop decisions) in seq order."""
    after = cursor_int(decode_cursor(cursor), "after", -1)
    entries = application_of(request).receipts(actor, "receipts", after_seq=after, limit=limit, kind=kind,
                                               sector=sector)
    nxt = encode_cursor({"after": entries[-1].seq}) if len(entries) == limit else None
    return {"items": [e.to_json() for e in entries], "next_cursor": nxt}


@declare(router, "GET", "/receipts/checkpoint", access.READ_RECEIPTS, response_model=models.Checkpoint)
def checkpoint(request: Request, actor: Actor, log: Log = "receipts") -> dict[str, Any]:
    """The latest signed checkpoint of a log (one is issued if the log has grown since)."""
    return application_of(request).checkpoint(actor, log).to_json()


@declare(router, "GET", "/receipts/consistency", access.READ_RECEIPTS, response_model=models.Consistency)
def consistency(request: Request, actor: Actor, first: Annotated[int, Query(ge=1, le=MAX_SEQ)],
                second: Annotated[int, Query(ge=1, le=MAX_SEQ)], log: Log = "receipts") -> dict[str, Any]:
    """RFC 9162 consistency proof between tree sizes ``first`` ≤ ``second``."""
    return application_of(request).consistency(actor, log, first, second).to_json()


@declare(router, "GET", "/receipts/{seq}", access.READ_RECEIPTS, response_model=dict[str, Any])
def get(seq: Seq, request: Request, actor: Actor, log: Log = "receipts") -> dict[str, Any]:
    """One entry: every payload field plus id and signature."""
    return application_of(request).receipt(actor, log, seq).to_json()


@declare(router, "GET", "/receipts/{seq}/evidence", access.READ_RECEIPTS, response_model=dict[str, Any])
def evidence(seq: Seq, request: Request, actor: Actor, log: Log = "receipts") -> dict[str, Any]:
    """The entry's evidence commitment recomputed from the store: ``ok`` false names the first mismatch (a
    missing or edited observation, a root that no longer matches)."""
    return application_of(request).receipt_evidence(actor, log, seq).to_json()


@declare(router, "GET", "/receipts/{seq}/proof", access.READ_RECEIPTS, response_model=models.Bundle)
def proof(seq: Seq, request: Request, actor: Actor, log: Log = "receipts") -> dict[str, Any]:
    """An offline proof bundle (entry, inclusion proof, signed checkpoint, public key)."""
    return application_of(request).prove(actor, log, seq)
