"""``/observations``: ingest (single and atomic batch) and read. Healthcare reads need a justification."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request, Response

from knhk.app import access
from knhk.errors import UsageError
from knhk.observations.ingest import IngestResult
from knhk.ops.clock import format_rfc3339, parse_rfc3339
from knhk.service import metrics, models
from knhk.service.guards import PARSED_BODY
from knhk.service.pagination import cursor_int, decode_cursor, encode_cursor
from knhk.service.routes import PREFIX, declare
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["observations"])


def _count(results: list[IngestResult]) -> None:
    for sector, n in Counter(r.observation.sector for r in results if not r.duplicate).items():
        metrics.OBSERVATIONS.labels(sector).inc(n)


def _result(r: IngestResult) -> dict[str, Any]:
    return {"observation": r.observation.to_json(), "duplicate": r.duplicate,
            "violations": [v.data() for v in r.violations], "receipts": list(r.receipt_ids),
            "receipts_pending": r.receipts_pending}


def _batch_results(results: list[IngestResult]) -> list[dict[str, Any]]:
    """The batch answer's items: what :func:`_result` gives, built in one pass without copying values (orjson
    encodes the stored dicts as they are), each distinct instant formatted once."""
    stamps: dict[int, str] = {}
    out: list[dict[str, Any]] = []
    for r in results:
        o = r.observation
        ts = stamps.get(o.ts_us)
        if ts is None:
            ts = stamps[o.ts_us] = format_rfc3339(o.ts_us)
        received = stamps.get(o.received_us)
        if received is None:
            received = stamps[o.received_us] = format_rfc3339(o.received_us)
        value = o.value if type(o.value) is dict else dict(o.value)
        metadata = o.metadata if type(o.metadata) is dict else dict(o.metadata)
        view = {"id": o.id, "seq": o.seq, "event_type": o.event_type, "sector": o.sector, "timestamp": ts,
                "received_at": received, "value": value, "metadata": metadata, "conforming": o.conforming,
                "issues": list(o.issues), "skewed": o.skewed, "client_id": o.client_id,
                "content_hash": o.content_hash}
        out.append({"observation": view, "duplicate": r.duplicate,
                    "violations": [v.data() for v in r.violations] if r.violations else [],
                    "receipts": list(r.receipt_ids), "receipts_pending": r.receipts_pending})
    return out


@declare(router, "POST", "/observations", access.INGEST, response_model=models.IngestResult, status_code=201,
         responses={200: {"model": models.IngestResult, "description": "Already stored (idempotent replay)"}})
def ingest(body: models.ObservationIn, request: Request, response: Response, actor: Actor) -> dict[str, Any]:
    """Ingest one observation. Re-sending the same client id with the same content returns the stored one."""
    result = application_of(request).ingest(actor, body.model_dump(exclude_none=True))
    _count([result])
    if result.duplicate:
        response.status_code = 200
    return _result(result)


@declare(router, "POST", "/observations/batch", access.INGEST, response_model=models.BatchResult, status_code=201,
         openapi_extra=models.BATCH_REQUEST_BODY)
def ingest_batch(request: Request, actor: Actor) -> Response:
    """Ingest up to 10,000 observations in one transaction: all are stored or none."""
    # The body was parsed strictly once by the request guards; its items are validated by the ingest itself
    # (the rules of ObservationIn), and the answer is encoded directly: no model is built twice per item.
    raws = models.batch_items(request.scope.get(PARSED_BODY))
    results = application_of(request).ingest_batch(actor, raws)
    _count(results)
    duplicates = sum(1 for r in results if r.duplicate)
    body = {"stored": len(results) - duplicates, "duplicates": duplicates, "results": _batch_results(results)}
    return Response(orjson.dumps(body), status_code=201, media_type="application/json")


@declare(router, "GET", "/observations", access.READ_OBSERVATIONS, response_model=models.ObservationPage)
def list_observations(
    request: Request, actor: Actor, sector: str | None = None, event_type: str | None = None,
    since: Annotated[str | None, Query(description="RFC 3339")] = None,
    until: Annotated[str | None, Query(description="RFC 3339")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
    x_access_justification: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Observations in ingest order (healthcare needs ``X-Access-Justification``; every such read is audited)."""
    try:
        since_us = parse_rfc3339(since) if since else None
        until_us = parse_rfc3339(until) if until else None
    except ValueError as exc:
        raise UsageError(f"since/until must be RFC 3339 timestamps: {exc}") from exc
    after = cursor_int(decode_cursor(cursor), "after", 0)
    page = application_of(request).observations(actor, sector=sector, event_type=event_type, since_us=since_us,
                                                until_us=until_us, after=after, limit=limit,
                                                justification=x_access_justification)
    return {"items": [o.to_json() for o in page.items],
            "next_cursor": None if page.next_after is None else encode_cursor({"after": page.next_after})}


@declare(router, "GET", "/observations/{observation_id}", access.READ_OBSERVATIONS,
         response_model=models.Observation)
def get_observation(observation_id: str, request: Request, actor: Actor,
                    x_access_justification: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """One observation by id."""
    obs = application_of(request).observation(actor, observation_id, justification=x_access_justification)
    return dict(obs.to_json())
