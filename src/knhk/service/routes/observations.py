"""``/observations``: ingest (single and atomic batch) and read. Healthcare reads need a justification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from knhk.errors import UsageError
from knhk.ops.clock import parse_rfc3339
from knhk.service import metrics, models
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Caller, require, state_of

router = APIRouter(prefix=PREFIX, tags=["observations"])


def _ingested(request: Request, caller: Caller, results: list[Any]) -> None:
    st = state_of(request)
    per_sector: dict[str, int] = {}
    for r in results:
        if not r.duplicate:
            per_sector[r.observation.sector] = per_sector.get(r.observation.sector, 0) + 1
    for sector, n in per_sector.items():
        metrics.OBSERVATIONS.labels(sector).inc(n)
        st.ingest_audit.add(caller.identity, sector, n)


def _result(r: Any) -> dict[str, Any]:
    return {"observation": r.observation.to_json(), "duplicate": r.duplicate,
            "violations": [v.data() for v in r.violations], "receipts": list(r.receipt_ids)}


@declare(router, "POST", "/observations", "observations:write", response_model=models.IngestResult, status_code=201,
         responses={200: {"model": models.IngestResult, "description": "Already stored (idempotent replay)"}})
def ingest(body: models.ObservationIn, request: Request, response: Response,
           caller: Annotated[Caller, Depends(require("observations:write"))]) -> dict[str, Any]:
    """Ingest one observation. Re-sending the same client id with the same content returns the stored one."""
    result = state_of(request).runtime.ingestor.ingest(body.model_dump(exclude_none=True), client=caller.pseudonym)
    _ingested(request, caller, [result])
    if result.duplicate:
        response.status_code = 200
    return _result(result)


@declare(router, "POST", "/observations/batch", "observations:write", response_model=models.BatchResult,
         status_code=201)
def ingest_batch(body: models.ObservationBatchIn, request: Request,
                 caller: Annotated[Caller, Depends(require("observations:write"))]) -> dict[str, Any]:
    """Ingest up to 10,000 observations in one transaction: all are stored or none."""
    if not body.observations:
        raise UsageError("a batch needs at least one observation")
    raws = [o.model_dump(exclude_none=True) for o in body.observations]
    results = state_of(request).runtime.ingestor.ingest_batch(raws, client=caller.pseudonym)
    _ingested(request, caller, results)
    return {"stored": sum(1 for r in results if not r.duplicate), "duplicates": sum(1 for r in results if r.duplicate),
            "results": [_result(r) for r in results]}


def _justify(request: Request, caller: Caller, sector: str | None, justification: str | None, what: str) -> None:
    st = state_of(request)
    if sector is None or sector not in st.settings.phi_sectors:
        return
    if not justification or not justification.strip():
        raise UsageError(f"reading {sector} observations needs an X-Access-Justification header")
    st.runtime.audit.record(caller.identity, "phi.read", what, "success", reason=justification[:1000], sector=sector)


@declare(router, "GET", "/observations", "observations:read", response_model=models.ObservationPage)
def list_observations(
    request: Request, caller: Annotated[Caller, Depends(require("observations:read"))],
    sector: str | None = None, event_type: str | None = None,
    since: Annotated[str | None, Query(description="RFC 3339")] = None,
    until: Annotated[str | None, Query(description="RFC 3339")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
    x_access_justification: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Observations in ingest order (healthcare needs ``X-Access-Justification``; every such read is audited)."""
    if sector is None and any(True for _ in state_of(request).settings.phi_sectors):
        raise UsageError("name a sector: reads across sectors could include protected health information")
    _justify(request, caller, sector, x_access_justification, f"observations?sector={sector}")
    try:
        since_us = parse_rfc3339(since) if since else None
        until_us = parse_rfc3339(until) if until else None
    except ValueError as exc:
        raise UsageError(f"since/until must be RFC 3339 timestamps: {exc}") from exc
    after = cursor_int(decode_cursor(cursor), "after", 0)
    page = state_of(request).runtime.reader.query(sector=sector, event_type=event_type, since_us=since_us,
                                                  until_us=until_us, after=after, limit=limit)
    return {"items": [o.to_json() for o in page.items],
            "next_cursor": None if page.next_after is None else encode_cursor({"after": page.next_after})}


@declare(router, "GET", "/observations/{observation_id}", "observations:read", response_model=models.Observation)
def get_observation(observation_id: str, request: Request,
                    caller: Annotated[Caller, Depends(require("observations:read"))],
                    x_access_justification: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """One observation by id."""
    obs = state_of(request).runtime.reader.get(observation_id)
    _justify(request, caller, obs.sector, x_access_justification, f"observation/{observation_id}")
    return obs.to_json()
