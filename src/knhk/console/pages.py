"""The console's pages: sectors overview, proposals (with the decision form), snapshot lineage and diffs, the
receipts explorer, the audit log and erasure. Each page calls the same :class:`~knhk.app.application.Application`
operation the API route calls, as the signed-in principal: authorization, segregation of duties, MFA and audit
are the application's, never the console's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from knhk.console.face import check_csrf, face_of, render, session_of
from knhk.errors import ForbiddenError, InvalidInputError, KnhkError

router = APIRouter()


def _time_us(value: str | None, what: str) -> int | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{what} {value!r} is not a date and time (YYYY-MM-DDTHH:MM)") from exc
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


@router.get("/")
def overview(request: Request) -> Response:
    """Each sector: its current snapshot, recent cycles and their outcomes, open alerts, held proposals."""
    session = session_of(request)
    app, actor = face_of(request).application, session.principal
    sectors: list[dict[str, Any]] = []
    for sector in app.sectors():
        sectors.append({
            "name": sector,
            "current": app.current_snapshot(actor, sector),
            "cycles": app.receipts(actor, kind="cycle.completed", sector=sector, limit=5, newest_first=True),
            "alerts": app.receipts(actor, kind="alert.raised", sector=sector, limit=5, newest_first=True),
            "held": app.proposals(actor, sector=sector, status="held", limit=20),
        })
    return render(request, "overview.html", title="Sectors", sectors=sectors)


@router.get("/proposals")
def proposals(request: Request, status: str | None = None, sector: str | None = None) -> Response:
    session = session_of(request)
    rows = face_of(request).application.proposals(session.principal, sector=sector or None, status=status or None,
                                                  limit=200)
    return render(request, "proposals.html", title="Proposals", rows=rows, status=status or "",
                  sector=sector or "", sectors=face_of(request).application.sectors())


@router.get("/proposals/{proposal_id}")
def proposal(request: Request, proposal_id: str, outcome: str | None = None) -> Response:
    """ΔΣ as a readable diff, the validation report stage by stage, the doctrines that held it, approvals."""
    session = session_of(request)
    details = face_of(request).application.proposal(session.principal, proposal_id)
    latest = details.validations[-1]["report"] if details.validations else None
    return render(request, "proposal.html", title=f"Proposal {proposal_id[:12]}", d=details, p=details.proposal,
                  summary=details.proposal.delta.summary(), report=latest, outcome=outcome)


@router.post("/proposals/{proposal_id}/decision")
def decide(request: Request, proposal_id: str, csrf: Annotated[str, Form()],
           decision: Annotated[str, Form(pattern="^(approve|reject)$")],
           reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Approve or reject as the signed-in person (``Application.decide``, as ``POST /proposals/{id}/approvals``)."""
    session = session_of(request)
    check_csrf(session, csrf)
    if decision == "reject" and not reason.strip():
        raise InvalidInputError("say why you reject the proposal")
    app = face_of(request).application
    try:
        result = app.decide(session.principal, proposal_id, decision, reason.strip() or None)
    except ForbiddenError as exc:
        details = app.proposal(session.principal, proposal_id)
        return render(request, "proposal.html", status_code=403, title="Refused", d=details, p=details.proposal,
                      summary=details.proposal.delta.summary(),
                      report=details.validations[-1]["report"] if details.validations else None,
                      refused=exc, reason=exc.details.get("reason"))
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(f"{root}/proposals/{proposal_id}?outcome={result.outcome}", status_code=303)


@router.get("/snapshots")
def snapshots(request: Request, sector: str = "finance", a: str | None = None, b: str | None = None) -> Response:
    """A sector's lineage (root at the bottom) and, for two chosen snapshots, their diff."""
    session = session_of(request)
    app = face_of(request).application
    chain = app.lineage(session.principal, sector=sector)
    diff = app.diff(session.principal, a, b, sector=sector) if a and b else None
    return render(request, "snapshots.html", title=f"Lineage of {sector}", sector=sector, chain=chain,
                  sectors=app.sectors(), a=a or "", b=b or "", diff=diff)


@router.get("/receipts")
def receipts(request: Request, kind: str = "", sector: str = "", subject: str = "", since: str = "",
             until: str = "") -> Response:
    """Search receipts by kind, sector, subject and time, newest first (the receipts log; the audit log is the
    audit page's, for ``audit:read``)."""
    log = "receipts"
    session = session_of(request)
    app = face_of(request).application
    entries = app.receipts(session.principal, log, kind=kind or None, sector=sector or None,
                           subject=subject or None, since_us=_time_us(since, "from"), until_us=_time_us(until, "until"),
                           limit=100, newest_first=True)
    return render(request, "receipts.html", title="Receipts", entries=entries, kind=kind, sector=sector,
                  subject=subject, since=since, until=until, log=log, sectors=app.sectors())


@router.get("/receipts/{seq}")
def receipt(request: Request, seq: int, log: str = "receipts") -> Response:
    session = session_of(request)
    entry = face_of(request).application.receipt(session.principal, log, seq)
    return render(request, "receipt.html", title=f"Receipt {seq}", entry=entry, log=log)


@router.get("/receipts/{seq}/bundle.json")
def bundle(request: Request, seq: int, log: str = "receipts") -> dict[str, Any]:
    """The offline proof bundle (``Application.prove``, as ``GET /receipts/{seq}/proof``), for the browser."""
    session = session_of(request)
    return face_of(request).application.prove(session.principal, log, seq)


@router.get("/audit")
def audit(request: Request, action: str = "") -> Response:
    """The audit log, the latest 200 entries first (administrators: ``audit:read``)."""
    session = session_of(request)
    events = face_of(request).application.audit_events(session.principal, action=action or None, limit=200,
                                                       newest_first=True)
    return render(request, "audit.html", title="Audit log", events=events, action=action)


@router.get("/erasure")
def erasure_page(request: Request) -> Response:
    session = session_of(request)
    app = face_of(request).application
    done = app.audit_events(session.principal, action="subject.erased", limit=200, newest_first=True)
    return render(request, "erasure.html", title="Erasure requests", done=done)


@router.post("/erasure")
def erase(request: Request, csrf: Annotated[str, Form()],
          subject: Annotated[str, Form(min_length=1, max_length=500)]) -> Response:
    """Crypto-shred a subject (``Application.erase_subject``, as ``POST /subjects/{id}/erasure``)."""
    session = session_of(request)
    check_csrf(session, csrf)
    app = face_of(request).application
    try:
        report = app.erase_subject(session.principal, subject.strip())
    except KnhkError as exc:
        done = app.audit_events(session.principal, action="subject.erased", limit=200, newest_first=True)
        return render(request, "erasure.html", status_code=exc.http_status, title="Erasure requests", done=done,
                      refused=exc)
    done = app.audit_events(session.principal, action="subject.erased", limit=200, newest_first=True)
    return render(request, "erasure.html", title="Erasure requests", done=done, report=report)
