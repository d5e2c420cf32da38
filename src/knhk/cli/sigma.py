"""``knhk sigma …``: the ontology snapshots of each sector (SPEC §4)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from knhk.cli.context import actor, application
from knhk.cli.output import print_json, say, table
from knhk.ops.clock import format_rfc3339

app = typer.Typer(help="Ontology snapshots (Σ): list, show, lineage, diff, export, promote, rollback, gc.",
                  no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json")]


@app.command("list")
def list_snapshots(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
                   limit: int = 50, as_json: Json = False) -> None:
    """Snapshots, newest first."""
    listing = application(ctx).snapshots(actor(), sector=sector, limit=limit)
    items = listing.page.items
    if as_json:
        print_json({"items": [{**i.to_json(), "current": listing.is_current(i)} for i in items],
                    "next_cursor": listing.page.next_cursor})
        return
    table("snapshots", ["id", "sector", "parent", "origin", "triples", "created", "current"],
          [[i.id[:16], i.sector, (i.parent or "")[:16], i.origin, i.triple_count, format_rfc3339(i.created_us),
            "yes" if listing.is_current(i) else ""] for i in items])


Sector = Annotated[str | None, typer.Option(help="The sector (needed when a snapshot is given as 'current').")]


@app.command("show")
def show(ctx: typer.Context, snapshot: str, sector: Sector = None, as_json: Json = False) -> None:
    """One snapshot's metadata (ids may be abbreviated, or 'current' with --sector)."""
    out = application(ctx).snapshot(actor(), snapshot, sector=sector).to_json()
    if as_json:
        print_json(out)
        return
    for key, value in out.items():
        say(f"[bold]{key}[/bold]: {value}")


@app.command("current")
def current(ctx: typer.Context, sector: Annotated[str, typer.Option(help="The sector.")],
            as_json: Json = False) -> None:
    """The sector's current snapshot."""
    info = application(ctx).current_snapshot(actor(), sector)
    if as_json:
        print_json(info.to_json())
    else:
        say(f"{sector}: {info.id} ({info.triple_count} triples, origin {info.origin})")


@app.command("lineage")
def lineage(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
            snapshot: Annotated[str | None, typer.Option(help="Start here instead of the current snapshot.")] = None,
            as_json: Json = False) -> None:
    """Ancestry of a snapshot (default: the sector's current one) back to the root, with promotions."""
    rows = [step.to_json() for step in application(ctx).lineage(actor(), sector=sector, snapshot=snapshot)]
    if as_json:
        print_json(rows)
        return
    start = rows[0]["id"] if rows else ""
    table(f"lineage of {start[:16]}", ["id", "origin", "proposal", "triples", "action", "at"],
          [[r["id"][:16], r["origin"], (r["proposal_id"] or "")[:20], r["triple_count"], r["action"] or "",
            r["promoted_at"] or ""] for r in rows])


@app.command("diff")
def diff(ctx: typer.Context, a: str, b: str, sector: Sector = None, as_json: Json = False) -> None:
    """Triples added and removed from snapshot A to snapshot B (either may be 'current' with --sector)."""
    d = application(ctx).diff(actor(), a, b, sector=sector)
    if as_json:
        print_json(d.to_json())
    else:
        sys.stdout.write(d.to_text())


@app.command("export")
def export(ctx: typer.Context, snapshot: str,
           fmt: Annotated[str, typer.Option("--format", help="turtle or ntriples")] = "turtle",
           full: Annotated[bool, typer.Option(help="Include Σ_core.")] = False, sector: Sector = None) -> None:
    """Print a snapshot (an id, a prefix, or 'current' with --sector) as Turtle or N-Triples."""
    sys.stdout.write(application(ctx).export(actor(), snapshot, fmt, full=full, sector=sector))


@app.command("promote")
def promote(ctx: typer.Context, snapshot: str, sector: Annotated[str, typer.Option()],
            receipt: Annotated[str | None, typer.Option(help="Id of the passing proposal.validated receipt.")] = None,
            force: Annotated[bool, typer.Option(help="Promote without a validation receipt (recorded as forced).")]
            = False,
            actor_name: Annotated[str | None, typer.Option("--actor", help="Who promotes (audited).")] = None,
            reason: Annotated[str | None, typer.Option()] = None, as_json: Json = False) -> None:
    """Promote a validated child of the current snapshot (compare-and-set)."""
    move = application(ctx).promote(actor(actor_name), snapshot, sector=sector, validation_receipt_id=receipt,
                                    force=force, reason=reason)
    if as_json:
        print_json(move.to_json())
    else:
        say(f"{sector}: {move.previous_id} → {move.snapshot_id}" + (" (no-op)" if move.noop else ""))


@app.command("rollback")
def rollback(ctx: typer.Context, sector: Annotated[str, typer.Option()],
             actor_name: Annotated[str | None, typer.Option("--actor")] = None,
             reason: Annotated[str | None, typer.Option()] = None, as_json: Json = False) -> None:
    """Move the sector back to the current snapshot's parent."""
    move = application(ctx).rollback(actor(actor_name), sector, reason=reason)
    if as_json:
        print_json(move.to_json())
    else:
        say(f"{sector}: rolled back {move.previous_id} → {move.snapshot_id}")


@app.command("gc")
def gc(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
       min_age_s: Annotated[int | None, typer.Option(help="Only orphans older than this (default 1 day).")] = None,
       as_json: Json = False) -> None:
    """Remove the content of never-promoted orphan snapshots (promoted ones are never touched)."""
    removed = application(ctx).collect_snapshots(actor(), sector=sector, min_age_s=min_age_s)
    if as_json:
        print_json({"collected": list(removed)})
    else:
        say(f"collected {len(removed)} unpromoted orphan snapshot(s)")
