"""``knhk proposals …``: list, show, approve and reject proposals.

In embedded mode the approver is named on the command line (``--approver NAME --approver-sector SECTOR
--approver-role ROLE``) and acts as that principal; the service takes identity from the authenticated token
instead. Both go through the same operation (:meth:`knhk.app.application.Application.decide`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from knhk.cli.context import actor, application
from knhk.cli.output import print_json, say, table
from knhk.loop.proposals import Execution
from knhk.ops.clock import format_rfc3339

app = typer.Typer(help="Proposals (ΔΣ) and their approval.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json")]
Approver = Annotated[str, typer.Option("--approver", help="Who decides (stored as a pseudonym).")]
ApproverSector = Annotated[str | None, typer.Option("--approver-sector", help="The approver's sector attribute.")]
ApproverRole = Annotated[list[str], typer.Option("--approver-role", help="A role the approver holds (repeatable).")]


@app.command("list")
def list_proposals(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
                   status: Annotated[str | None, typer.Option(help="created, held, promoted, rejected, …")] = None,
                   limit: int = 50, as_json: Json = False) -> None:
    """Proposals, newest first."""
    rows = application(ctx).proposals(actor(), sector=sector, status=status, limit=limit)
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    table("proposals", ["id", "sector", "pattern", "status", "cost", "created", "reason"],
          [[p.id, p.sector, p.pattern or "", s.status, p.cost, format_rfc3339(p.created_us), (s.reason or "")[:80]]
           for p, s in ((r.proposal, r.status) for r in rows)])


@app.command("show")
def show(ctx: typer.Context, proposal_id: str, as_json: Json = False) -> None:
    """A proposal with its ΔΣ, validations and approvals."""
    details = application(ctx).proposal(actor(), proposal_id)
    p, s = details.proposal, details.status
    out: dict[str, Any] = details.to_json()
    if as_json:
        print_json(out)
        return
    say(f"[bold]{p.id}[/bold] ({p.sector}) — {s.status}: {s.reason or ''}")
    say(f"  {p.rationale}")
    say(f"  base {p.base_id[:16]} → candidate {p.candidate_id[:16]}, cost {p.cost}, "
        f"{len(p.delta.additions)} additions, {len(p.delta.removals)} removals")
    for v in out["validations"]:
        say(f"  validation {v['id']}: {v['outcome']}")
        for stage in v["report"]["stages"]:
            say(f"    {stage['name']:<14} {stage['status']:<8} {stage['message']}")
    for a in out["approvals"]:
        say(f"  {a['decision']} by {a['subject']} ({', '.join(a['roles'])}; sector {a['sector']}) "
            f"at {format_rfc3339(a['at_us'])}")


def _report(result: Execution, as_json: bool) -> None:
    if as_json:
        print_json(result.to_json())
    else:
        reason = "" if result.report is None or not result.report.reason else f": {result.report.reason}"
        say(f"proposal {result.proposal.id}: {result.outcome}{reason}")


@app.command("approve")
def approve(ctx: typer.Context, proposal_id: str, approver: Approver, approver_sector: ApproverSector = None,
            approver_role: ApproverRole = [], comment: Annotated[str | None, typer.Option()] = None,  # noqa: B006
            as_json: Json = False) -> None:
    """Approve a held proposal; when the quorum is reached it is validated again and promoted."""
    who = actor(approver, approver_role, approver_sector)
    _report(application(ctx).decide(who, proposal_id, "approve", comment), as_json)


@app.command("reject")
def reject(ctx: typer.Context, proposal_id: str, approver: Approver, approver_sector: ApproverSector = None,
           approver_role: ApproverRole = [], comment: Annotated[str | None, typer.Option()] = None,  # noqa: B006
           as_json: Json = False) -> None:
    """Reject a held proposal."""
    who = actor(approver, approver_role, approver_sector)
    _report(application(ctx).decide(who, proposal_id, "reject", comment), as_json)
