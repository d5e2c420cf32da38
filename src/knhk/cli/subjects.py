"""``knhk subjects erase``: GDPR erasure by crypto-shredding."""

from __future__ import annotations

from typing import Annotated

import typer

from knhk.cli.context import actor as acting
from knhk.cli.context import application
from knhk.cli.output import print_json, say

app = typer.Typer(help="Data subjects (pseudonymised identities).", no_args_is_help=True)


@app.command("erase")
def erase(ctx: typer.Context,
          subject: Annotated[str, typer.Argument(help="A pseudonym (sub_…) or the identity to erase.")],
          actor: Annotated[str | None, typer.Option(help="Who erases (audited by pseudonym).")] = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delete a subject's key and encrypted identity; the ledger keeps verifying, the person is unlinkable."""
    report = application(ctx).erase_subject(acting(actor), subject)
    if as_json:
        print_json(report.to_json())
        return
    say(f"erased {report.pseudonym}: identity rows deleted {report.identity_rows_deleted}, key rows deleted "
        f"{report.key_rows_deleted}; still referencing the (now unlinkable) pseudonym: "
        f"{report.ledger_entries_referencing} receipt(s), {report.audit_entries_referencing} audit entr(ies), "
        f"{report.approvals_referencing} approval(s), {report.observations_ingested} observation(s) ingested")
