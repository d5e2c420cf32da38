"""``knhk sectors …``: the installed sector packs — what each declares and how the loop watches it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from knhk.cli.context import runtime
from knhk.cli.output import print_json, say, table
from knhk.errors import InvalidInputError
from knhk.runtime import Runtime, doctrines_for
from knhk.sectors.detectors import detector_settings
from knhk.sectors.pack import load_pack

app = typer.Typer(help="Sector packs: list them, show one (guards, doctrines, detector thresholds).",
                  no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def describe(rt: Runtime, sector: str) -> dict[str, Any]:
    """Everything ``sectors show`` prints about one installed sector."""
    installed = rt.registry.sectors()
    if sector not in installed:
        raise InvalidInputError(f"sector {sector!r} has no installed sector pack; installed: {', '.join(installed)}")
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
                    "hot_path": g.hot_path, "criticality": g.criticality, "immutable": g.immutable, "ticks": g.ticks}
                   for g in schema.guards],
        "doctrines": [{"id": d.id, "type": d.type, "level": d.level, "description": d.description}
                      for d in doctrines_for(sector)],
        "detectors": detector_settings(sector, rt.settings).rows(),
        "learned_thresholds": {kind: milli / 1000 for kind, milli in sorted(learned.items())},
    }


@app.command("list")
def list_sectors(ctx: typer.Context, as_json: Json = False) -> None:
    """The installed sectors with their current snapshot."""
    rt = runtime(ctx)
    rows = []
    for sector in rt.registry.sectors():
        current = rt.registry.current(sector)
        rows.append({"sector": sector, "description": load_pack(sector).description,
                     "current_snapshot": None if current is None else current.id})
    if as_json:
        print_json(rows)
        return
    table("sectors", ["sector", "description", "current snapshot"],
          [[r["sector"], r["description"], (r["current_snapshot"] or "")[:16]] for r in rows])


@app.command("show")
def show(ctx: typer.Context, sector: str, as_json: Json = False) -> None:
    """One sector: its guards (criticality, immutability), doctrines and detector thresholds (with their
    source: default, pack or configuration)."""
    out = describe(runtime(ctx), sector)
    if as_json:
        print_json(out)
        return
    say(f"[bold]{out['sector']}[/bold] — {out['description']}; current snapshot {out['current_snapshot']}")
    say(f"event types: {', '.join(out['event_types'])}")
    table("guards", ["id", "kind", "event type", "field", "limit", "hot path", "criticality", "immutable"],
          [[g["guard_id"], g["kind"], g["event_type"] or "*", g["field"] or "", g["limit"],
            "yes" if g["hot_path"] else "no", g["criticality"], "yes" if g["immutable"] else "no"]
           for g in out["guards"]])
    table("doctrines", ["id", "type", "level", "description"],
          [[d["id"], d["type"], d["level"], d["description"]] for d in out["doctrines"]])
    table("detector thresholds", ["setting", "value", "source"],
          [[d["setting"], d["value"], d["source"]] for d in out["detectors"]])
    if out["learned_thresholds"]:
        table("learned confidence thresholds", ["pattern kind", "threshold"],
              [[k, f"{v:.2f}"] for k, v in out["learned_thresholds"].items()])
