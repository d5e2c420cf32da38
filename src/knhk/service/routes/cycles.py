"""``/cycles``: run one MAPE-K cycle of a sector now (operators, MFA) and read cycle records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from knhk.app import access
from knhk.service import models
from knhk.service.routes import PREFIX, declare
from knhk.service.scheduler import record_cycle_metrics
from knhk.service.security import Actor, application_of

router = APIRouter(prefix=PREFIX, tags=["cycles"])


@declare(router, "POST", "/cycles", access.RUN_CYCLE, response_model=models.Cycle, status_code=201)
def run(body: models.CycleIn, request: Request, actor: Actor) -> dict[str, Any]:
    """Run one cycle now (409 when a cycle of the sector is already running anywhere)."""
    record = application_of(request).run_cycle(actor, body.sector)
    record_cycle_metrics(record)
    return dict(record.to_json())


@declare(router, "GET", "/cycles/{cycle_id}", access.READ_CYCLES, response_model=models.Cycle)
def get(cycle_id: str, request: Request, actor: Actor) -> dict[str, Any]:
    """A stored cycle record."""
    return application_of(request).cycle(actor, cycle_id)
