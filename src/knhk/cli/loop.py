"""``knhk ingest`` and ``knhk cycle``: feed observations, run MAPE-K cycles."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from knhk.cli.context import actor, application
from knhk.cli.output import print_json, say
from knhk.errors import UsageError
from knhk.ops.json_input import loads_strict

if TYPE_CHECKING:
    from knhk.observations.admission import Label


def read_numbered_json_lines(source: str) -> list[tuple[int, Any]]:
    """(line number, JSON value) of every non-blank line of a JSON-lines file (or stdin for ``-``); the first
    bad line is an error naming it."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from exc
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        out.append((number, loads_strict(line, what=f"line {number} of {source}")))
    return out


def _line_label(lines: Sequence[tuple[int, Any]], start: int = 0) -> Label:
    """Name batch item ``i`` (of the batch starting at ``start``) by its line in the file."""
    return lambda i: f"line {lines[start + i][0]}"


def ingest(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="JSON-lines file of observations, or - for standard input.")],
    client: Annotated[str | None, typer.Option(help="Name the ingesting client (audited; default user@host).")]
    = None,
    backfill: Annotated[bool, typer.Option(help="Recorded data: keep past timestamps however old (audited as "
                                                "observations.backfilled; the 60 s skew limit still holds live).")]
    = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ingest observations (JSON lines: event_type, sector, value, optional timestamp, metadata, id).

    Every line is checked before anything is stored: one bad line stores nothing and names the line.
    A sample file ships as examples/events.jsonl (recorded: ingest it with --backfill).
    """
    from rich.progress import BarColumn, Progress, TextColumn

    from knhk.observations.ingest import MAX_BATCH as BATCH  # files of up to 10,000 observations: one transaction

    lines = read_numbered_json_lines(source)
    app, who = application(ctx), actor(client)
    raws = [raw for _, raw in lines]
    app.check_observations(who, raws, label=_line_label(lines), backfill=backfill)  # one bad line stores nothing
    summary = {"read": len(raws), "stored": 0, "duplicates": 0, "non_conforming": 0, "guard_violations": 0,
               "skewed": 0}
    with Progress(TextColumn("ingesting"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  transient=True, disable=as_json or not sys.stderr.isatty()) as progress:
        task = progress.add_task("ingest", total=len(raws))
        for start in range(0, len(raws), BATCH):
            results = app.ingest_batch(who, raws[start:start + BATCH], label=_line_label(lines, start),
                                       backfill=backfill)
            for r in results:
                summary["duplicates" if r.duplicate else "stored"] += 1
                summary["non_conforming"] += 0 if r.observation.conforming else 1
                summary["guard_violations"] += len(r.violations)
                summary["skewed"] += 1 if r.observation.skewed else 0
            progress.update(task, advance=len(results))
    if as_json:
        print_json(summary)
    else:
        say(f"ingested {summary['stored']} observation(s), {summary['duplicates']} duplicate(s); "
            f"{summary['non_conforming']} not conforming to their sector's snapshot; "
            f"{summary['guard_violations']} guard violation(s) receipted; {summary['skewed']} flagged skewed")


def describe_cycle(record: Mapping[str, Any]) -> None:
    c = record["counts"]
    say(f"cycle {record['id']} of [bold]{record['sector']}[/bold]: {record['outcome']} "
        f"in {record['duration_ms']:.0f} ms")
    say(f"  {c['observations']} observation(s) in window, {c['patterns']} pattern(s), {c['proposals']} new "
        f"proposal(s), {c['promotions']} promoted, {c['held']} held, {c['rejected']} rejected, {c['alerts']} alert(s)")
    for p in record["patterns"]:
        say(f"  pattern {p['name']} (confidence {p['confidence']:.2f}): {p['action']}")
    for p in record["proposals"]:
        extra = f" at stage {p['failed_stage']}: {p['reason']}" if p.get("failed_stage") else ""
        say(f"  proposal {p['id'][:17]}… from {p['pattern']}: {p['outcome']}{extra}")
    if record.get("error"):
        say(f"  [red]failed[/red]: {record['error']}")


def cycle(
    ctx: typer.Context,
    sector: Annotated[str | None, typer.Option(help="The sector to run (default: every installed sector).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run one MAPE-K cycle now (per sector); exit 1 when a cycle failed."""
    app, who = application(ctx), actor()
    records = [app.run_cycle(who, s).to_json() for s in ([sector] if sector else app.sectors())]
    if as_json:
        print_json(records[0] if sector else records)
    else:
        for r in records:
            describe_cycle(r)
    if any(r["outcome"] == "failed" for r in records):
        raise typer.Exit(1)
