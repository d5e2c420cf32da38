"""``knhk receipts …``: list, show, verify, prove, verify-bundle, checkpoint, consistency."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from knhk.cli.context import actor, application
from knhk.cli.output import print_json, say, table
from knhk.errors import UsageError, VerificationError
from knhk.ops.clock import format_rfc3339
from knhk.proof.entry import LOGS, Entry

if TYPE_CHECKING:
    from knhk.app.application import Application
    from knhk.ledger.verify import VerifyReport

app = typer.Typer(help="The signed, hash-chained, Merkle-logged receipt ledger.", no_args_is_help=True)

LogOption = Annotated[str, typer.Option("--log", help="Which log: receipts or audit.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def entry_row(e: Entry) -> list[Any]:
    return [e.seq, format_rfc3339(e.ts_us), e.kind, e.sector or "", e.subject or "", e.outcome or "", e.id[:16]]


@app.command("list")
def list_entries(
    ctx: typer.Context,
    log: LogOption = "receipts",
    kind: Annotated[str | None, typer.Option(help="Only entries of this kind.")] = None,
    sector: Annotated[str | None, typer.Option(help="Only entries of this sector.")] = None,
    after: Annotated[int, typer.Option(help="Only entries after this seq.")] = -1,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List ledger entries in seq order."""
    entries = application(ctx).receipts(actor(), log, after_seq=after, limit=limit, kind=kind, sector=sector)
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    table(f"{log} log", ["seq", "time", "kind", "sector", "subject", "outcome", "id"],
          [entry_row(e) for e in entries])


@app.command("show")
def show(ctx: typer.Context, seq: int, log: LogOption = "receipts", as_json: JsonOption = False) -> None:
    """Show one entry with all its fields."""
    entry = application(ctx).receipt(actor(), log, seq)
    if as_json:
        print_json(entry.to_json())
        return
    for key, value in entry.to_json().items():
        say(f"[bold]{key}[/bold]: {orjson.dumps(value).decode() if isinstance(value, dict | list) else value}")


def run_verify(app: Application, log: str, workers: int | None, quiet: bool) -> VerifyReport:
    if quiet:
        return app.verify(actor(), log, workers=workers)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(f"verifying {log}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task(log, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return app.verify(actor(), log, workers=workers, progress=update)


def describe_report(report: VerifyReport) -> None:
    verdict = "[green]VERIFIED[/green]" if report.ok else "[red]FAILED[/red]"
    say(f"{verdict} log {report.log}: {report.verified_count}/{report.total_count} entries verified, "
        f"tree size {report.tree_size}, root {report.root_hash or '-'}")
    say(f"  signature failures {report.signature_failures}, chain breaks {report.chain_breaks}, "
        f"retrocausation {report.retrocausation_violations}, row mismatches {report.row_mismatches}, "
        f"Merkle node mismatches {report.merkle_node_mismatches}, "
        f"checkpoints {report.checkpoints_checked} {'consistent' if report.checkpoint_consistent else 'INCONSISTENT'}")
    first = report.first_failure
    if first is not None:
        where = f"seq {first.seq}" if first.seq is not None else "log"
        say(f"  first failure at {where}: {first.reason}")


def verify_command(ctx: typer.Context, logs: list[str], as_json: bool, workers: int | None,
                   metrics_file: Path | None = None) -> None:
    app = application(ctx)
    reports = [run_verify(app, log, workers, as_json) for log in logs]
    ok = all(r.ok for r in reports)
    if metrics_file is not None:
        from knhk.ops.telemetry.textfile import write_verification

        write_verification(metrics_file, {r.log: r.ok for r in reports}, time.time())
    if as_json:
        if len(reports) == 1:
            print_json(reports[0].to_json())
        else:
            print_json({"ok": ok, "logs": {r.log: r.to_json() for r in reports}})
    else:
        for report in reports:
            describe_report(report)
    if not ok:
        raise typer.Exit(1)


@app.command("verify")
def verify(
    ctx: typer.Context,
    log: Annotated[str, typer.Option("--log", help="receipts, audit, or all.")] = "receipts",
    as_json: JsonOption = False,
    workers: Annotated[int | None, typer.Option(help="Verifier processes (default: one per core).")] = None,
    evidence: Annotated[bool, typer.Option("--evidence", help="Also recompute every receipt's evidence "
                                           "commitment from the observation store.")] = False,
    metrics_file: Annotated[Path | None, typer.Option(
        "--metrics-file", help="Also write the result as Prometheus text (knhk_receipt_chain_valid and "
        "knhk_receipt_chain_verified_timestamp_seconds per log) to this file, replaced atomically: for "
        "node_exporter's textfile collector or a Pushgateway.")] = None,
) -> None:
    """Verify a whole log: ids, signatures, chain, time order, Merkle tree and checkpoints. Exit 1 on any failure."""
    logs = list(LOGS) if log == "all" else [log]
    if metrics_file is not None and not metrics_file.parent.is_dir():  # before a verification that may take minutes
        raise UsageError(f"--metrics-file {metrics_file}: the directory {metrics_file.parent} does not exist")
    verify_command(ctx, logs, as_json, workers, metrics_file)
    if evidence and "receipts" in logs:
        checked, failed = application(ctx).verify_evidence(actor())
        if failed is not None:
            raise VerificationError(f"evidence of receipt {failed.seq} ({failed.kind}): {failed.message}")
        if not as_json:
            say(f"[green]INTACT[/green] the evidence of {checked} receipt(s) recomputed from the observation store")


@app.command("prove")
def prove(ctx: typer.Context, seq: int, log: LogOption = "receipts") -> None:
    """Print an offline proof bundle (JSON) for entry SEQ."""
    print_json(application(ctx).prove(actor(), log, seq))


@app.command("evidence")
def evidence(ctx: typer.Context, seq: int, log: LogOption = "receipts", as_json: JsonOption = False) -> None:
    """Recompute entry SEQ's evidence commitment from the store (every observation, by content); exit 1 naming
    the first mismatch."""
    report = application(ctx).receipt_evidence(actor(), log, seq)
    if as_json:
        print_json(report.to_json())
        if not report.ok:
            raise typer.Exit(1)
        return
    if not report.ok:
        raise VerificationError(f"entry {seq} of log {log}: {report.message}")
    say(f"[green]INTACT[/green] {report.message}")


@app.command("verify-bundle")
def verify_bundle_command(
    file: Annotated[str, typer.Argument(help="Bundle file, or - for standard input.")],
    as_json: JsonOption = False,
) -> None:
    """Check a proof bundle with no database: entry id, signature, checkpoint signature, inclusion proof."""
    from knhk.proof.bundle import verify_bundle

    try:
        text = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read bundle {file}: {exc.strerror}") from exc
    try:
        bundle = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise VerificationError(f"bundle is not JSON: {exc}") from exc
    result = verify_bundle(bundle)
    if as_json:
        print_json(result)
        return
    say(f"[green]VALID[/green] entry {result['seq']} of log {result['log']} ({result['kind']})")
    for line in result["proved"]:
        say(f"  ✓ {line}")
    say(f"  checkpoint root {result['root_hash']} at tree size {result['tree_size']}")


@app.command("checkpoint")
def checkpoint(ctx: typer.Context, log: LogOption = "receipts", as_json: JsonOption = False) -> None:
    """Issue a signed checkpoint (C2SP signed note) of the log's current tree."""
    cp = application(ctx).checkpoint(actor(), log)
    if as_json:
        print_json(cp.to_json())
        return
    sys.stdout.write(cp.note)


@app.command("consistency")
def consistency(ctx: typer.Context, first: int, second: int, log: LogOption = "receipts",
                as_json: JsonOption = False) -> None:
    """Print the RFC 9162 consistency proof between two tree sizes."""
    out = application(ctx).consistency(actor(), log, first, second).to_json()
    if as_json:
        print_json(out)
        return
    for key, value in out.items():
        say(f"{key}: {value}")
