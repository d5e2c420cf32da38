"""``knhk proposals …``: list, show, approve, reject, object, the emergency path and its review.

Who decides is the subject of ``--token`` / ``KNHK_TOKEN`` (authorized as in the API). In dev mode only, the
approver may instead be named on the command line (``--approver NAME --approver-sector SECTOR --approver-role
ROLE``). Both go through the same operations (:meth:`knhk.app.application.Application.decide` …).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from knhk.cli.context import actor, application
from knhk.cli.output import print_json, say, table
from knhk.ops.clock import format_rfc3339

if TYPE_CHECKING:
    from knhk.loop.proposals import Execution

app = typer.Typer(help="Proposals (ΔΣ) and their approval.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json")]
Approver = Annotated[str | None, typer.Option("--approver", help="Who decides (stored as a pseudonym); dev mode "
                                              "only: otherwise the --token's subject decides.")]
ApproverSector = Annotated[str | None, typer.Option("--approver-sector", help="The approver's sector attribute.")]
ApproverRole = Annotated[list[str], typer.Option("--approver-role", help="A role the approver holds (repeatable).")]


@app.command("list")
def list_proposals(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
                   status: Annotated[str | None, typer.Option(help="created, held, promoted, rejected, …")] = None,
                   overdue: Annotated[bool, typer.Option("--overdue", help="Emergency changes whose post-hoc "
                                                         "review is past due.")] = False,
                   limit: int = 50, as_json: Json = False) -> None:
    """Proposals, newest first, with their change class."""
    rows = application(ctx).proposals(actor(), sector=sector, status=status, limit=limit, overdue=overdue)
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    table("proposals", ["id", "sector", "class", "pattern", "status", "cost", "created", "reason"],
          [[p.id, p.sector, s.change_class or "", p.pattern or "", s.status, p.cost, format_rfc3339(p.created_us),
            (s.reason or "")[:80]] for p, s in ((r.proposal, r.status) for r in rows)])


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
    say(f"  class {s.change_class or '?'}: {s.class_reason or ''}")
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
        klass = f" [{result.klass['change_class']}]" if result.klass else ""
        say(f"proposal {result.proposal.id}{klass}: {result.outcome}{reason}")


@app.command("approve")
def approve(ctx: typer.Context, proposal_id: str, approver: Approver = None, approver_sector: ApproverSector = None,
            approver_role: ApproverRole = [], comment: Annotated[str | None, typer.Option()] = None,  # noqa: B006
            as_json: Json = False) -> None:
    """Approve a held proposal; when the quorum is reached it is validated again and promoted."""
    who = actor(approver, approver_role, approver_sector)
    _report(application(ctx).decide(who, proposal_id, "approve", comment), as_json)


@app.command("reject")
def reject(ctx: typer.Context, proposal_id: str, approver: Approver = None, approver_sector: ApproverSector = None,
           approver_role: ApproverRole = [], comment: Annotated[str | None, typer.Option()] = None,  # noqa: B006
           as_json: Json = False) -> None:
    """Reject a held proposal."""
    who = actor(approver, approver_role, approver_sector)
    _report(application(ctx).decide(who, proposal_id, "reject", comment), as_json)


@app.command("object")
def object_(ctx: typer.Context, proposal_id: str, approver: Approver = None, approver_sector: ApproverSector = None,
            approver_role: ApproverRole = [], comment: Annotated[str | None, typer.Option()] = None,  # noqa: B006
            as_json: Json = False) -> None:
    """Object to a held proposal (a major change in its review window): an objection is a rejection."""
    who = actor(approver, approver_role, approver_sector)
    _report(application(ctx).decide(who, proposal_id, "reject", comment or "objection"), as_json)


@app.command("emergency")
def emergency(ctx: typer.Context, proposal_id: str, justification: Annotated[str, typer.Option(
                  help="Why this cannot wait (recorded in the class reason and the receipts).")],
              operator: Annotated[str | None, typer.Option("--operator", help="Who promotes.")] = None,
              operator_sector: ApproverSector = None, as_json: Json = False) -> None:
    """Promote an open proposal at once as an emergency change (operator with MFA); a distinct validator owes
    a post-hoc review (`knhk proposals review`)."""
    who = actor(operator, ["operator"] if operator else (), operator_sector)
    _report(application(ctx).emergency_promote(who, proposal_id, justification), as_json)


@app.command("review")
def review(ctx: typer.Context, proposal_id: str,
           verdict: Annotated[str, typer.Option(help="accepted or rejected")], approver: Approver = None,
           comment: Annotated[str | None, typer.Option()] = None, as_json: Json = False) -> None:
    """The post-hoc review of an emergency change, by a validator who is neither its author nor its operator."""
    who = actor(approver, ["validator"] if approver else ())
    entry = application(ctx).review_proposal(who, proposal_id, verdict, comment)
    if as_json:
        print_json({"proposal_id": proposal_id, "verdict": verdict, "receipt": entry.id})
    else:
        say(f"proposal {proposal_id}: review {verdict} (receipt {entry.id[:16]})")
