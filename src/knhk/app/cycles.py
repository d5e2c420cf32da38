"""Operations on MAPE-K cycles (SPEC §1, §10 ``/cycles``; §13 ``knhk cycle``): run one cycle of a sector now (one
at a time per sector across every process, under the sector's lease) and read stored cycle records."""

from __future__ import annotations

from typing import Any

from knhk.app.access import READ_CYCLES, RUN_CYCLE
from knhk.app.base import Operations
from knhk.errors import NotFoundError
from knhk.identity.rbac import Principal
from knhk.loop.coordinator import CycleRecord


class CycleOps(Operations):
    def run_cycle(self, actor: Principal, sector: str) -> CycleRecord:
        """Run one cycle of ``sector`` now (409 while one of the sector runs anywhere); audited."""
        self._allow(actor, RUN_CYCLE)
        self._installed(sector)
        record = self.runtime.run_cycle(sector)
        self.runtime.audit.record(actor.identity, "cycle.run", f"cycle/{record.id}", "success", sector=sector,
                                  metadata={"outcome": record.outcome})
        return record

    def cycle(self, actor: Principal, cycle_id: str) -> dict[str, Any]:
        """A stored cycle record."""
        self._allow(actor, READ_CYCLES)
        found = self.runtime.coordinator.cycle(cycle_id)
        if found is None:
            raise NotFoundError(f"no cycle {cycle_id}")
        return found
