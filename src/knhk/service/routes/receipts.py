"""``/receipts``: the ledger, its proofs and checkpoints (read-only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from knhk.ops.clock import format_rfc3339
from knhk.service import models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Caller, require, state_of

router = APIRouter(prefix=PREFIX, tags=["receipts"])
Log = Literal["receipts", "audit"]
MAX_SEQ = 2**53 - 1
Seq = Annotated[int, Path(ge=0, le=MAX_SEQ, description="An entry's position in its log.")]


@declare(router, "GET", "/receipts", "receipts:read", response_model=models.Page)
def list_receipts(request: Request, caller: Annotated[Caller, Depends(require("receipts:read"))],
                  kind: str | None = None, sector: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None) -> dict[str, Any]:
    """Receipts (loop decisions) in seq order."""
    after = cursor_int(decode_cursor(cursor), "after", -1)
    entries = state_of(request).runtime.ledger.entries("receipts", after_seq=after, limit=limit, kind=kind,
                                                       sector=sector)
    nxt = encode_cursor({"after": entries[-1].seq}) if len(entries) == limit else None
    return {"items": [e.to_json() for e in entries], "next_cursor": nxt}


@declare(router, "GET", "/receipts/checkpoint", "receipts:read", response_model=models.Checkpoint)
def checkpoint(request: Request, caller: Annotated[Caller, Depends(require("receipts:read"))],
               log: Log = "receipts") -> dict[str, Any]:
    """The latest signed checkpoint of a log (one is issued if the log has grown since)."""
    ledger = state_of(request).runtime.ledger
    cp = ledger.latest_checkpoint(log)
    if cp is None or cp.tree_size < ledger.tree_size(log):
        cp = ledger.checkpoint(log)
    return {"log": cp.log, "tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(), "key_id": cp.key_id,
            "issued": format_rfc3339(cp.issued_us), "note": cp.note}


@declare(router, "GET", "/receipts/consistency", "receipts:read", response_model=models.Consistency)
def consistency(request: Request, caller: Annotated[Caller, Depends(require("receipts:read"))],
                first: Annotated[int, Query(ge=1, le=MAX_SEQ)], second: Annotated[int, Query(ge=1, le=MAX_SEQ)],
                log: Log = "receipts") -> dict[str, Any]:
    """RFC 9162 consistency proof between tree sizes ``first`` ≤ ``second``."""
    ledger = state_of(request).runtime.ledger
    proof = ledger.consistency_proof(log, first, second)
    return {"log": log, "first": first, "second": second, "first_root": ledger.root(log, first).hex(),
            "second_root": ledger.root(log, second).hex(), "proof": [h.hex() for h in proof]}


@declare(router, "GET", "/receipts/{seq}", "receipts:read", response_model=dict[str, Any])
def get(seq: Seq, request: Request, caller: Annotated[Caller, Depends(require("receipts:read"))],
        log: Log = "receipts") -> dict[str, Any]:
    """One entry: every payload field plus id and signature."""
    return state_of(request).runtime.ledger.entry(log, seq).to_json()


@declare(router, "GET", "/receipts/{seq}/evidence", "receipts:read", response_model=dict[str, Any])
def evidence(seq: Seq, request: Request, caller: Annotated[Caller, Depends(require("receipts:read"))],
             log: Log = "receipts") -> dict[str, Any]:
    """The entry's evidence commitment recomputed from the store: ``ok`` false names the first mismatch (a
    missing or edited observation, a root that no longer matches)."""
    from knhk.observations.evidence import check_evidence

    rt = state_of(request).runtime
    return check_evidence(rt.ledger, rt.db, log, seq).to_json()


@declare(router, "GET", "/receipts/{seq}/proof", "receipts:read", response_model=models.Bundle)
def proof(seq: Seq, request: Request, caller: Annotated[Caller, Depends(require("receipts:read"))],
          log: Log = "receipts") -> dict[str, Any]:
    """An offline proof bundle (entry, inclusion proof, signed checkpoint, public key)."""
    return state_of(request).runtime.ledger.prove(log, seq)
