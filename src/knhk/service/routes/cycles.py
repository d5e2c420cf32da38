"""``/cycles``: run one MAPE-K cycle of a sector now (operators, MFA) and read cycle records."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from knhk.errors import InvalidInputError, NotFoundError
from knhk.service import models
from knhk.service.routes import PREFIX, declare
from knhk.service.scheduler import record_cycle_metrics
from knhk.service.security import Caller, require, state_of

router = APIRouter(prefix=PREFIX, tags=["cycles"])


@declare(router, "POST", "/cycles", "cycles:run", mutating=True, response_model=models.Cycle, status_code=201)
def run(body: models.CycleIn, request: Request,
        caller: Annotated[Caller, Depends(require("cycles:run", mutating=True))]) -> dict[str, Any]:
    """Run one cycle now (409 when a cycle of the sector is already running anywhere)."""
    rt = state_of(request).runtime
    if rt.registry.current(body.sector) is None:
        raise InvalidInputError(f"unknown sector {body.sector!r}")
    record = rt.run_cycle(body.sector)
    record_cycle_metrics(record)
    rt.audit.record(caller.identity, "cycle.run", f"cycle/{record.id}", "success", sector=body.sector,
                    metadata={"outcome": record.outcome})
    return record.to_json()


@declare(router, "GET", "/cycles/{cycle_id}", "cycles:read", response_model=models.Cycle)
def get(cycle_id: str, request: Request,
        caller: Annotated[Caller, Depends(require("cycles:read"))]) -> dict[str, Any]:
    """A stored cycle record."""
    found = state_of(request).runtime.coordinator.cycle(cycle_id)
    if found is None:
        raise NotFoundError(f"no cycle {cycle_id}")
    return found
