"""``knhk sigma …``: the ontology snapshots of each sector (SPEC §4)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from knhk.cli.context import runtime
from knhk.cli.keys import default_actor
from knhk.cli.output import print_json, say, table
from knhk.errors import InvalidInputError
from knhk.ops.clock import format_rfc3339

app = typer.Typer(help="Ontology snapshots (Σ): list, show, lineage, diff, export, promote, rollback, gc.",
                  no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json")]


@app.command("list")
def list_snapshots(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
                   limit: int = 50, as_json: Json = False) -> None:
    """Snapshots, newest first."""
    rt = runtime(ctx)
    page = rt.registry.list(sector, limit)
    currents = {s: (c.id if (c := rt.registry.current(s)) else None) for s in {i.sector for i in page.items}}
    if as_json:
        print_json({"items": [{**i.to_json(), "current": currents.get(i.sector) == i.id} for i in page.items],
                    "next_cursor": page.next_cursor})
        return
    table("snapshots", ["id", "sector", "parent", "origin", "triples", "created", "current"],
          [[i.id[:16], i.sector, (i.parent or "")[:16], i.origin, i.triple_count, format_rfc3339(i.created_us),
            "yes" if currents.get(i.sector) == i.id else ""] for i in page.items])


Sector = Annotated[str | None, typer.Option(help="The sector (needed when a snapshot is given as 'current').")]


@app.command("show")
def show(ctx: typer.Context, snapshot: str, sector: Sector = None, as_json: Json = False) -> None:
    """One snapshot's metadata (ids may be abbreviated, or 'current' with --sector)."""
    rt = runtime(ctx)
    info = rt.registry.info(rt.registry.resolve(snapshot, sector))
    schema = rt.registry.schema(info.id)
    out = {**info.to_json(), "event_types": sorted(schema.event_types), "guards": [g.guard_id for g in schema.guards]}
    if as_json:
        print_json(out)
        return
    for key, value in out.items():
        say(f"[bold]{key}[/bold]: {value}")


@app.command("current")
def current(ctx: typer.Context, sector: Annotated[str, typer.Option(help="The sector.")],
            as_json: Json = False) -> None:
    """The sector's current snapshot."""
    snap = runtime(ctx).registry.current(sector)
    if snap is None:
        raise InvalidInputError(f"sector {sector} has no current snapshot")
    if as_json:
        print_json(snap.info.to_json())
    else:
        say(f"{sector}: {snap.id} ({snap.triple_count} triples, origin {snap.origin})")


@app.command("lineage")
def lineage(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
            snapshot: Annotated[str | None, typer.Option(help="Start here instead of the current snapshot.")] = None,
            as_json: Json = False) -> None:
    """Ancestry of a snapshot (default: the sector's current one) back to the root, with promotions."""
    rt = runtime(ctx)
    if snapshot is not None:
        start = rt.registry.resolve(snapshot, sector)
    elif sector is not None:
        cur = rt.registry.current(sector)
        if cur is None:
            raise InvalidInputError(f"sector {sector} has no current snapshot")
        start = cur.id
    else:
        raise InvalidInputError("name --sector or --snapshot")
    chain = rt.registry.lineage(start)
    history = {h.snapshot_id: h for h in rt.registry.history(chain[0].sector)} if chain else {}
    rows: list[dict[str, Any]]
    rows = [{**i.to_json(), "promoted_at": format_rfc3339(history[i.id].at_us) if i.id in history else None,
             "action": history[i.id].action if i.id in history else None} for i in chain]
    if as_json:
        print_json(rows)
        return
    table(f"lineage of {start[:16]}", ["id", "origin", "proposal", "triples", "action", "at"],
          [[r["id"][:16], r["origin"], (r["proposal_id"] or "")[:20], r["triple_count"], r["action"] or "",
            r["promoted_at"] or ""] for r in rows])


@app.command("diff")
def diff(ctx: typer.Context, a: str, b: str, sector: Sector = None, as_json: Json = False) -> None:
    """Triples added and removed from snapshot A to snapshot B (either may be 'current' with --sector)."""
    rt = runtime(ctx)
    d = rt.registry.diff(rt.registry.resolve(a, sector), rt.registry.resolve(b, sector))
    if as_json:
        print_json(d.to_json())
    else:
        sys.stdout.write(d.to_text())


@app.command("export")
def export(ctx: typer.Context, snapshot: str,
           fmt: Annotated[str, typer.Option("--format", help="turtle or ntriples")] = "turtle",
           full: Annotated[bool, typer.Option(help="Include Σ_core.")] = False, sector: Sector = None) -> None:
    """Print a snapshot (an id, a prefix, or 'current' with --sector) as Turtle or N-Triples."""
    rt = runtime(ctx)
    sys.stdout.write(rt.registry.export(rt.registry.resolve(snapshot, sector), fmt, full))


@app.command("promote")
def promote(ctx: typer.Context, snapshot: str, sector: Annotated[str, typer.Option()],
            receipt: Annotated[str | None, typer.Option(help="Id of the passing proposal.validated receipt.")] = None,
            force: Annotated[bool, typer.Option(help="Promote without a validation receipt (recorded as forced).")]
            = False,
            actor: Annotated[str | None, typer.Option(help="Who promotes (audited).")] = None,
            reason: Annotated[str | None, typer.Option()] = None, as_json: Json = False) -> None:
    """Promote a validated child of the current snapshot (compare-and-set)."""
    rt = runtime(ctx)
    sid = rt.registry.resolve(snapshot, sector)
    if receipt is None and not force:
        validated = [v for v in rt.ledger.entries("receipts", kind="proposal.validated", sector=sector,
                                                  descending=True, limit=1000)
                     if v.fields["data"].get("snapshot_id") == sid and v.fields["outcome"] == "approved"]
        if validated:
            receipt = validated[0].id
    move = rt.registry.promote(sector, sid, actor=actor or default_actor(), validation_receipt_id=receipt,
                               force=force, reason=reason)
    if as_json:
        print_json(move.to_json())
    else:
        say(f"{sector}: {move.previous_id} → {move.snapshot_id}" + (" (no-op)" if move.noop else ""))


@app.command("rollback")
def rollback(ctx: typer.Context, sector: Annotated[str, typer.Option()],
             actor: Annotated[str | None, typer.Option()] = None,
             reason: Annotated[str | None, typer.Option()] = None, as_json: Json = False) -> None:
    """Move the sector back to the current snapshot's parent."""
    move = runtime(ctx).registry.rollback(sector, actor=actor or default_actor(), reason=reason)
    if as_json:
        print_json(move.to_json())
    else:
        say(f"{sector}: rolled back {move.previous_id} → {move.snapshot_id}")


@app.command("gc")
def gc(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
       min_age_s: Annotated[int | None, typer.Option(help="Only orphans older than this (default 1 day).")] = None,
       as_json: Json = False) -> None:
    """Remove the content of never-promoted orphan snapshots (promoted ones are never touched)."""
    removed = runtime(ctx).registry.gc(sector, min_age_s=min_age_s, actor=default_actor())
    if as_json:
        print_json({"collected": list(removed)})
    else:
        say(f"collected {len(removed)} unpromoted orphan snapshot(s)")
