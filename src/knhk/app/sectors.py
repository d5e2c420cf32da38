"""Operations on the installed sector packs (SPEC §3, §6; ``knhk sectors``): list them, and show one — its
guards with their criticality and immutability, its doctrines, its change-class rules, its detector thresholds
with where each comes from (default, pack, configuration) and the confidence thresholds learning has set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knhk.app.access import READ_SECTORS
from knhk.app.base import Operations
from knhk.app.runtime import detector_settings, doctrines_for
from knhk.errors import InvalidInputError
from knhk.identity.rbac import Principal
from knhk.sectors.pack import load_pack


@dataclass(frozen=True)
class SectorSummary:
    sector: str
    description: str
    current_snapshot: str | None

    def to_json(self) -> dict[str, Any]:
        return {"sector": self.sector, "description": self.description, "current_snapshot": self.current_snapshot}


class SectorOps(Operations):
    def installed_sectors(self, actor: Principal) -> list[SectorSummary]:
        """The installed sectors with their current snapshot."""
        self._allow(actor, READ_SECTORS)
        registry = self.runtime.registry
        out = []
        for sector in registry.sectors():
            current = registry.current(sector)
            out.append(SectorSummary(sector, load_pack(sector).description, None if current is None else current.id))
        return out

    def sector(self, actor: Principal, sector: str) -> dict[str, Any]:
        """Everything ``knhk sectors show`` prints about one installed sector."""
        self._allow(actor, READ_SECTORS)
        rt = self.runtime
        installed = rt.registry.sectors()
        if sector not in installed:
            raise InvalidInputError(f"sector {sector!r} has no installed sector pack; installed: "
                                    f"{', '.join(installed)}")
        current = rt.registry.current(sector)
        schema = rt.registry.current_schema(sector)
        learned = rt.thresholds.thresholds(sector)
        return {
            "sector": sector,
            "description": load_pack(sector).description,
            "current_snapshot": None if current is None else current.id,
            "event_types": sorted(schema.event_types),
            "guards": [{"guard_id": g.guard_id, "kind": g.kind, "event_type": g.event_type, "field": g.field,
                        "limit": format(g.limit, "f"), "window_s": g.window_s if g.kind == "rate_limit" else None,
                        "hot_path": g.hot_path, "criticality": g.criticality, "immutable": g.immutable,
                        "ticks": g.ticks} for g in schema.guards],
            "doctrines": [{"id": d.id, "type": d.type, "level": d.level, "description": d.description}
                          for d in doctrines_for(sector)],
            "detectors": detector_settings(sector, rt.settings).rows(),
            "change_classes": rt.proposals.classes_for(sector).to_json(),
            "learned_thresholds": {kind: milli / 1000 for kind, milli in sorted(learned.items())},
        }
