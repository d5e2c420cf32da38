"""``knhk sectors …``: the installed sector packs — what each declares and how the loop watches it."""

from __future__ import annotations

from typing import Annotated

import typer

from knhk.cli.context import actor, application
from knhk.cli.output import print_json, say, table

app = typer.Typer(help="Sector packs: list them, show one (guards, doctrines, detector thresholds).",
                  no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("list")
def list_sectors(ctx: typer.Context, as_json: Json = False) -> None:
    """The installed sectors with their current snapshot."""
    rows = [s.to_json() for s in application(ctx).installed_sectors(actor())]
    if as_json:
        print_json(rows)
        return
    table("sectors", ["sector", "description", "current snapshot"],
          [[r["sector"], r["description"], (r["current_snapshot"] or "")[:16]] for r in rows])


@app.command("show")
def show(ctx: typer.Context, sector: str, as_json: Json = False) -> None:
    """One sector: its guards (criticality, immutability), doctrines and detector thresholds (with their
    source: default, pack or configuration)."""
    out = application(ctx).sector(actor(), sector)
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
    table("change classes (classes.json, KNHK_CHANGE_CLASSES)", ["setting", "value"],
          [[k, str(v)] for k, v in out["change_classes"].items()])
    table("detector thresholds", ["setting", "value", "source"],
          [[d["setting"], d["value"], d["source"]] for d in out["detectors"]])
    if out["learned_thresholds"]:
        table("learned confidence thresholds", ["pattern kind", "threshold"],
              [[k, f"{v:.2f}"] for k, v in out["learned_thresholds"].items()])
