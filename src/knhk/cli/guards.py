"""``knhk guards …``: guard relaxations — switch one guard of one sector off for a bounded time, with people.

``knhk guards relax GUARD --sector S --for 2h --reason …`` requests it; ``approve`` / ``reject`` decide (the
quorum and minimum review depend on the guard's criticality); ``revoke`` ends it at once; ``list`` shows them.
Each command acts as the authenticated subject of ``--token`` / ``KNHK_TOKEN`` and is authorized like the API
(:mod:`knhk.cli.context`); only in dev mode (no ``KNHK_OIDC_ISSUERS``) may the person be typed instead
(``--actor`` / ``--approver*``), as for ``knhk proposals``. All go through the same operations as the API
(:mod:`knhk.app.guards`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from knhk.cli.context import actor, application
from knhk.cli.output import print_json, say, table
from knhk.errors import UsageError
from knhk.ops.clock import format_rfc3339

if TYPE_CHECKING:
    from knhk.governance.relaxations import Relaxation

app = typer.Typer(help="Guard relaxations: request, approve, reject, revoke, list.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Actor = Annotated[str | None, typer.Option("--actor", help="Who acts (dev mode only; default user@host; stored as a "
                                                          "pseudonym). Otherwise the --token's subject acts.")]
Approver = Annotated[str | None, typer.Option("--approver", help="Who decides (stored as a pseudonym); dev mode "
                                              "only: otherwise the --token's subject decides.")]
ApproverSector = Annotated[str | None, typer.Option("--approver-sector", help="The approver's sector attribute.")]
ApproverRole = Annotated[list[str], typer.Option("--approver-role", help="A role the approver holds (repeatable).")]
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` → seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"--for {text!r}: give a whole number with s, m, h or d (e.g. 2h)")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _show(r: Relaxation, as_json: bool) -> None:
    if as_json:
        print_json(r.to_json())
        return
    row = r.row
    window = "" if row.starts_us is None or row.ends_us is None else \
        f", window {format_rfc3339(row.starts_us)} → {format_rfc3339(row.ends_us)}"
    say(f"relaxation {row.id}: guard {row.guard_id} ({row.sector}, {row.criticality}) {r.state}; "
        f"{r.approvals}/{row.quorum} approvals, minimum review {row.min_review_s // 3600} h{window}")


@app.command("relax")
def relax(ctx: typer.Context, guard_id: str, sector: Annotated[str, typer.Option(help="The sector.")],
          duration: Annotated[str, typer.Option("--for", help="How long the guard is off once granted (2h, 30m).")],
          reason: Annotated[str, typer.Option(help="Why (recorded in the receipt).")],
          who: Actor = None, as_json: Json = False) -> None:
    """Request that GUARD be off in SECTOR for a while (immutable guards are refused)."""
    _show(application(ctx).relax_guard(actor(who), sector, guard_id, parse_duration(duration), reason), as_json)


@app.command("approve")
def approve(ctx: typer.Context, relaxation_id: str, approver: Approver = None, approver_sector: ApproverSector = None,
            approver_role: ApproverRole = [], comment: Annotated[str | None, typer.Option()] = None,  # noqa: B006
            as_json: Json = False) -> None:
    """Approve a pending relaxation; the quorum grants its window."""
    who = actor(approver, approver_role, approver_sector)
    _show(application(ctx).decide_relaxation(who, relaxation_id, "approve", comment), as_json)


@app.command("reject")
def reject(ctx: typer.Context, relaxation_id: str, approver: Approver = None, approver_sector: ApproverSector = None,
           approver_role: ApproverRole = [], comment: Annotated[str | None, typer.Option()] = None,  # noqa: B006
           as_json: Json = False) -> None:
    """Reject a pending relaxation (it ends)."""
    who = actor(approver, approver_role, approver_sector)
    _show(application(ctx).decide_relaxation(who, relaxation_id, "reject", comment), as_json)


@app.command("revoke")
def revoke(ctx: typer.Context, relaxation_id: str, reason: Annotated[str | None, typer.Option()] = None,
           who: Actor = None, as_json: Json = False) -> None:
    """End a relaxation now: the guard holds again at once."""
    _show(application(ctx).revoke_relaxation(actor(who), relaxation_id, reason), as_json)


@app.command("list")
def list_relaxations(ctx: typer.Context, sector: Annotated[str | None, typer.Option()] = None,
                     status: Annotated[str | None, typer.Option(
                         help="pending, scheduled, active, granted, rejected, revoked, ended, expired")] = None,
                     limit: int = 50, as_json: Json = False) -> None:
    """Guard relaxations, newest first."""
    rows = application(ctx).relaxations(actor(), sector=sector, status=status, limit=limit)
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    table("guard relaxations", ["id", "sector", "guard", "state", "approvals", "requested", "ends"],
          [[r.id, r.row.sector, r.row.guard_id, r.state, f"{r.approvals}/{r.row.quorum}",
            format_rfc3339(r.row.requested_us), "" if r.row.ends_us is None else format_rfc3339(r.row.ends_us)]
           for r in rows])
