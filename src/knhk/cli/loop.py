"""``knhk ingest`` and ``knhk cycle``: feed observations, run MAPE-K cycles."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn

from knhk.cli.context import runtime
from knhk.cli.output import print_json, say, table
from knhk.errors import ConflictError, InvalidInputError, KnhkError, UsageError
from knhk.observations.ingest import MAX_BATCH
from knhk.observations.model import Observation, check_skew, parse_observation
from knhk.ops.clock import format_rfc3339
from knhk.ops.json_input import loads_strict
from knhk.runtime import Runtime
from knhk.sectors.pack import available_sectors
from knhk.storage import observation_store

BATCH = MAX_BATCH  # files of up to 10,000 observations are stored in one transaction


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


def read_json_lines(source: str) -> list[Any]:
    """Every line of a JSON-lines file (or stdin for ``-``) as JSON values; the first bad line is an error."""
    return [value for _, value in read_numbered_json_lines(source)]


def _at_line(number: int, exc: KnhkError) -> KnhkError:
    message = re.sub(r"^observation \d+: ", "", exc.message)
    return type(exc)(f"line {number}: {message}")


def check_lines(rt: Runtime, lines: Sequence[tuple[int, Any]], now_us: int) -> None:
    """Everything ingest would refuse, judged for every line before anything is stored: a malformed
    observation, an id used twice with different content (in the file or already stored), a timestamp
    more than 60 s off (unless the line is an already-stored duplicate)."""
    parsed: list[tuple[int, Observation]] = []
    first: dict[str, tuple[int, str]] = {}
    for number, raw in lines:
        try:
            obs = parse_observation(raw, received_us=now_us)
        except KnhkError as exc:
            raise _at_line(number, exc) from exc
        if obs.client_id:
            earlier = first.setdefault(obs.id, (number, obs.content_hash))
            if earlier[1] != obs.content_hash:
                raise ConflictError(f"line {number}: id {obs.id!r} is also used by line {earlier[0]} with "
                                    "different content")
        parsed.append((number, obs))
    with rt.db.connection() as conn:
        stored = observation_store.find_by_ids(conn, list(first))
    for number, obs in parsed:
        old = stored.get(obs.id) if obs.client_id else None
        if old is not None:
            if old.content_hash != obs.content_hash:
                raise ConflictError(f"line {number}: id {obs.id!r} is already stored with different content; "
                                    "observations are never overwritten")
            continue
        if obs.skewed:
            try:
                check_skew(obs.ts_us, now_us)
            except KnhkError as exc:
                raise _at_line(number, exc) from exc


def ingest(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="JSON-lines file of observations, or - for standard input.")],
    client: Annotated[str | None, typer.Option(help="Name the ingesting client (audited).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ingest observations (JSON lines: event_type, sector, value, optional timestamp, metadata, id).

    Every line is checked before anything is stored: one bad line stores nothing and names the line.
    """
    lines = read_numbered_json_lines(source)
    rt = runtime(ctx)
    check_lines(rt, lines, rt.loop_clock.now_us())
    raws = [raw for _, raw in lines]
    summary = {"read": len(raws), "stored": 0, "duplicates": 0, "non_conforming": 0, "guard_violations": 0,
               "skewed": 0}
    with Progress(TextColumn("ingesting"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  transient=True, disable=as_json or not sys.stderr.isatty()) as progress:
        task = progress.add_task("ingest", total=len(raws))
        for start in range(0, len(raws), BATCH):
            try:
                results = rt.ingestor.ingest_batch(raws[start:start + BATCH], client=client)
            except KnhkError as exc:
                index = exc.details.get("index")
                if isinstance(index, int) and 0 <= start + index < len(lines):
                    raise _at_line(lines[start + index][0], exc) from exc
                raise
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


def describe_cycle(record: dict[str, Any]) -> None:
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
    rt = runtime(ctx)
    sectors = [sector] if sector else available_sectors()
    if sector is not None and rt.registry.current(sector) is None:
        raise InvalidInputError(f"unknown sector {sector!r}; installed: {', '.join(available_sectors())}")
    records = [rt.run_cycle(s).to_json() for s in sectors]  # each catches its windows up from the store
    if as_json:
        print_json(records[0] if sector else records)
    else:
        for r in records:
            describe_cycle(r)
    if any(r["outcome"] == "failed" for r in records):
        raise typer.Exit(1)


def cycles_list(ctx: typer.Context, sector: str | None = None, limit: int = 20, as_json: bool = False) -> None:
    from knhk.storage import loop_store

    rt = runtime(ctx)
    with rt.db.connection() as conn:
        rows = loop_store.list_cycles(conn, sector, limit)
    if as_json:
        print_json(rows)
        return
    table("cycles", ["id", "sector", "started", "outcome", "patterns", "proposals", "promotions"],
          [[r["id"], r["sector"], format_rfc3339(r["started_us"]), r["outcome"], r["counts"].get("patterns"),
            r["counts"].get("proposals"), r["counts"].get("promotions")] for r in rows])
