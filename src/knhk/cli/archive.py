"""``knhk archive run|list|verify`` (SPEC §11 retention): archive and drop months of observations older than the
retention, list the archived segments, and prove an archive against its ledger entry, offline.

``verify`` exits 0 when the archive, its signed manifest and its proof bundle all agree, 1 when anything does not
(each problem named), 2 for a file that is none of a segment's files — like ``knhk receipts verify``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from knhk.cli.context import actor as acting
from knhk.cli.context import application
from knhk.cli.output import print_json, say, table
from knhk.errors import UsageError
from knhk.ops.clock import format_rfc3339, parse_rfc3339

app = typer.Typer(help="Retention: archive old observations, list and verify archives.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_DAYS = re.compile(r"^([0-9]{1,5})d?$")


def _days(text: str | None) -> int | None:
    if text is None:
        return None
    match = _DAYS.match(text.strip())
    if not match or int(match.group(1)) < 1:
        raise UsageError(f"--retention must be a number of days such as 90d, not {text!r}")
    return int(match.group(1))


@app.command("run")
def run(
    ctx: typer.Context,
    retention: Annotated[str | None, typer.Option(help="Keep this many days (e.g. 90d; default "
                                                       "KNHK_RETENTION_DAYS).")] = None,
    now: Annotated[str | None, typer.Option(help="Take this RFC 3339 time as now (default: the clock).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say which months would go.")] = False,
    actor: Annotated[str | None, typer.Option(help="Who does it (audited; default user@host).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Archive, record in the ledger, then drop every whole month of observations older than the retention."""
    days = _days(retention)
    try:
        now_us = parse_rfc3339(now) if now is not None else None
    except ValueError as exc:
        raise UsageError(f"--now is not an RFC 3339 time: {exc}") from exc
    report = application(ctx).archive_observations(acting(actor), retention_days=days, now_us=now_us,
                                                   dry_run=dry_run)
    if as_json:
        print_json(report.to_json())
        return
    say(f"retention {report.retention_days} days: months of ingest ending before {format_rfc3339(report.cutoff_us)}"
        + (" (dry run)" if dry_run else ""))
    for a in report.archived:
        if dry_run:
            say(f"  {a.period}: {a.count} observation(s) would be archived and dropped")
        else:
            say(f"  {a.period}: {a.count} observation(s) archived in {a.archive} (receipt {a.ledger_seq})"
                + ("; partition dropped" if a.dropped else ""))
    if not report.archived:
        say("  nothing is older than the retention")
    if report.kept:
        say(f"  kept: {', '.join(report.kept)}")


@app.command("list")
def list_segments(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The archived (and dropped) segments of this installation, oldest first."""
    rows = application(ctx).archived_segments(acting())
    if as_json:
        print_json(rows)
        return
    table("archived segments", ["segment", "period", "count", "receipt", "archive"],
          [[r["segment"], r["period"], r["count"], r["ledger_seq"], r["archive"]] for r in rows])


@app.command("verify")
def verify(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The archive (.jsonl.gz), its manifest or its proof bundle.",
                                         exists=True, dir_okay=False, readable=True)],
    live: Annotated[bool, typer.Option("--live", help="Also look the receipt up in this installation's "
                                                      "ledger.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute an archive's count and Merkle roots, check its signed manifest and prove its ledger entry."""
    from knhk.app.retention import verify_archive

    report = verify_archive(file)
    if live and report.ok:
        application(ctx).archived_in_ledger(acting(), report)
    if as_json:
        print_json(report.to_json())
    elif report.ok:
        say(f"[green]VERIFIED[/green] segment {report.segment}: {report.count} observation(s)"
            + (f", {report.sealed_rows} with sealed PHI (their content hashes are taken as recorded; the rows "
               "root covers them)" if report.sealed_rows else ""))
        for line in report.checked:
            say(f"  - {line}")
    else:
        say(f"[red]FAILED[/red] segment {report.segment or file.name}:")
        for problem in report.problems:
            say(f"  - {problem}")
    if not report.ok:
        raise typer.Exit(1)
