"""``knhk audit …``: append, list and verify the audit log (actors are stored as pseudonyms)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from knhk.cli.context import actor as acting
from knhk.cli.context import application
from knhk.cli.output import print_json, table
from knhk.cli.receipts import verify_command
from knhk.errors import InvalidInputError

app = typer.Typer(help="The audit log: who did what.", no_args_is_help=True)


@app.command("append")
def append(
    ctx: typer.Context,
    actor: Annotated[str, typer.Option(help="Who acted (stored only as a pseudonym).")],
    action: Annotated[str, typer.Option(help="What was done, as noun.verb, e.g. deploy.completed.")],
    resource: Annotated[str, typer.Option(help="What it was done to.")],
    outcome: Annotated[str, typer.Option(help="success, failure, denied or error.")],
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    metadata: Annotated[str | None, typer.Option(help="A JSON object of extra facts.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Append one audit entry (for deployment scripts and operators)."""
    meta: dict[str, Any] = {}
    if metadata is not None:
        try:
            meta = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"--metadata is not JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise InvalidInputError("--metadata must be a JSON object")
    entry = application(ctx).record_audit(acting(actor), action, resource, outcome, reason=reason, metadata=meta)
    if as_json:
        print_json(entry.to_json())
    else:
        print(f"audit entry {entry.seq} {entry.id}")


@app.command("list")
def list_events(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    after: Annotated[int, typer.Option(help="Only entries after this seq.")] = -1,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    resolve: Annotated[bool, typer.Option(help="Show the identity behind each pseudonym (unless erased).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List audit entries."""
    app, who = application(ctx), acting()
    rows = []
    for ev in app.audit_events(who, after_seq=after, limit=limit, action=action):
        row = ev.to_json()
        if resolve:
            row["identity"] = app.identity_of(who, ev.actor) or "(erased)"
        rows.append(row)
    if as_json:
        print_json(rows)
        return
    columns = ["seq", "time", "actor", "action", "resource", "outcome", "reason"] + (["identity"] if resolve else [])
    table("audit log", columns, [[r.get(c) for c in columns] for r in rows])


@app.command("verify")
def verify(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False,
           workers: Annotated[int | None, typer.Option(help="Verifier processes.")] = None) -> None:
    """Verify the whole audit log. Exit 1 on any failure."""
    verify_command(ctx, ["audit"], as_json, workers)
