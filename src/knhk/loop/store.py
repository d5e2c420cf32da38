"""SQL of the loop's tables: proposals, their status, validations, approvals, cycle records and job leases.

No policy here: the proposal life cycle lives in :mod:`knhk.loop.proposals`, cycles in :mod:`knhk.loop.coordinator`,
leases in :mod:`knhk.loop.leases`; this module only moves rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from knhk.errors import ConflictError
from knhk.proposals.delta import DeltaSigma
from knhk.proposals.model import FINAL, Proposal, ProposalStatus
from knhk.storage.database import Connection

_PROPOSAL_COLS = "id, sector, base_id, candidate_id, delta, pattern, rationale, author, proposer, cost, created_us"


def insert_proposal(conn: Connection, p: Proposal) -> None:
    conn.execute(
        "INSERT INTO proposals (id, sector, base_id, candidate_id, delta, digest, pattern, rationale, author, "
        "proposer, cost, summary, created_us) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (p.id, p.sector, p.base_id, p.candidate_id, orjson.dumps(p.delta.to_json()).decode(), p.delta.digest(),
         p.pattern, p.rationale, p.author, p.proposer, p.cost, orjson.dumps(p.delta.summary().to_json()).decode(),
         p.created_us),
    )


def _proposal(row: Sequence[Any]) -> Proposal:
    return Proposal(str(row[0]), str(row[1]), str(row[2]), str(row[3]), DeltaSigma.from_json(orjson.loads(row[4])),
                    row[5], str(row[6]), str(row[7]), str(row[8]), int(row[9]), int(row[10]))


def get_proposal(conn: Connection, proposal_id: str) -> Proposal | None:
    row = conn.fetchone(f"SELECT {_PROPOSAL_COLS} FROM proposals WHERE id=?", (proposal_id,))
    return None if row is None else _proposal(row)


def find_proposals_by_prefix(conn: Connection, prefix: str, limit: int = 2) -> list[str]:
    """Ids starting with ``prefix`` (lowercase hex after ``prop_``: no LIKE wildcard can occur in it)."""
    rows = conn.fetchall("SELECT id FROM proposals WHERE id LIKE ? ORDER BY id LIMIT ?", (prefix + "%", limit))
    return [str(r[0]) for r in rows]


def list_proposals(conn: Connection, *, sector: str | None = None, status: str | None = None,
                   limit: int = 100, before_us: int | None = None,
                   overdue_at_us: int | None = None) -> list[tuple[Proposal, ProposalStatus]]:
    """Proposals, newest first; ``overdue_at_us``: only emergency changes whose review was due before then."""
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if sector is not None:
        where.append("p.sector=?")
        params.append(sector)
    if status is not None:
        where.append("s.status=?")
        params.append(status)
    if before_us is not None:
        where.append("p.created_us<?")
        params.append(before_us)
    if overdue_at_us is not None:
        where.append("r.reviewed_us IS NULL AND r.due_us<?")
        params.append(overdue_at_us)
    params.append(limit)
    cols = ", ".join(f"p.{c.strip()}" for c in _PROPOSAL_COLS.split(","))
    review = "JOIN proposal_reviews r ON r.proposal_id = p.id " if overdue_at_us is not None else ""
    rows = conn.fetchall(
        f"SELECT {cols}, s.status, s.reason, s.held_at_us, s.updated_us, c.change_class, c.reason FROM proposals p "
        f"JOIN proposal_status s ON s.proposal_id = p.id LEFT JOIN proposal_classes c ON c.proposal_id = p.id "
        f"{review}WHERE {' AND '.join(where)} ORDER BY p.created_us DESC, p.id LIMIT ?", params)
    return [(_proposal(r[:11]), ProposalStatus(str(r[0]), str(r[11]), r[12], r[13], int(r[14]), r[15], r[16]))
            for r in rows]


def set_status(conn: Connection, proposal_id: str, status: str, reason: str | None, now_us: int,
               held_at_us: int | None = None) -> None:
    """Set a proposal's status, unless it is final already (:class:`ConflictError`: a final status is never
    rewritten, whoever races for it)."""
    final = sorted(FINAL)
    updated = conn.execute(
        "UPDATE proposal_status SET status=?, reason=?, updated_us=?, held_at_us=COALESCE(?, held_at_us) "
        f"WHERE proposal_id=? AND status NOT IN ({','.join('?' * len(final))})",
        (status, reason, now_us, held_at_us, proposal_id, *final))
    if updated == 0:
        found = get_status(conn, proposal_id)
        if found is not None:
            raise ConflictError(f"proposal {proposal_id} is {found.status}, a final state: it does not change again")
        conn.execute("INSERT INTO proposal_status (proposal_id, status, reason, held_at_us, updated_us) "
                     "VALUES (?,?,?,?,?)", (proposal_id, status, reason, held_at_us, now_us))


def get_status(conn: Connection, proposal_id: str) -> ProposalStatus | None:
    row = conn.fetchone("SELECT s.proposal_id, s.status, s.reason, s.held_at_us, s.updated_us, c.change_class, "
                        "c.reason FROM proposal_status s LEFT JOIN proposal_classes c ON c.proposal_id = s.proposal_id "
                        "WHERE s.proposal_id=?", (proposal_id,))
    return None if row is None else ProposalStatus(str(row[0]), str(row[1]), row[2], row[3], int(row[4]), row[5],
                                                   row[6])


def set_class(conn: Connection, proposal_id: str, change_class: str, reason: str, now_us: int) -> None:
    updated = conn.execute("UPDATE proposal_classes SET change_class=?, reason=?, updated_us=? WHERE proposal_id=?",
                           (change_class, reason, now_us, proposal_id))
    if updated == 0:
        conn.execute("INSERT INTO proposal_classes (proposal_id, change_class, reason, updated_us) VALUES (?,?,?,?)",
                     (proposal_id, change_class, reason, now_us))


# -- the post-hoc review of an emergency change -------------------------------------------------------------
@dataclass(frozen=True)
class Review:
    proposal_id: str
    operator: str
    justification: str
    promoted_us: int
    due_us: int
    reviewer: str | None
    verdict: str | None
    comment: str | None
    reviewed_us: int | None
    alerted_us: int | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


_REVIEW_COLS = ("proposal_id, operator, justification, promoted_us, due_us, reviewer, verdict, comment, reviewed_us, "
                "alerted_us")


def insert_review(conn: Connection, proposal_id: str, operator: str, justification: str, promoted_us: int,
                  due_us: int) -> None:
    conn.execute("INSERT INTO proposal_reviews (proposal_id, operator, justification, promoted_us, due_us) "
                 "VALUES (?,?,?,?,?)", (proposal_id, operator, justification, promoted_us, due_us))


def get_review(conn: Connection, proposal_id: str) -> Review | None:
    row = conn.fetchone(f"SELECT {_REVIEW_COLS} FROM proposal_reviews WHERE proposal_id=?", (proposal_id,))
    return None if row is None else Review(*row)


def record_review(conn: Connection, proposal_id: str, reviewer: str, verdict: str, comment: str | None,
                  now_us: int) -> bool:
    """Record the review unless one was recorded already; True when recorded."""
    return conn.execute("UPDATE proposal_reviews SET reviewer=?, verdict=?, comment=?, reviewed_us=? "
                        "WHERE proposal_id=? AND reviewed_us IS NULL",
                        (reviewer, verdict, comment, now_us, proposal_id)) == 1


def overdue_unalerted(conn: Connection, sector: str, now_us: int) -> list[tuple[Review, str]]:
    """Unreviewed emergency changes of ``sector`` past their due time and not yet alerted, with their sector."""
    cols = ", ".join(f"r.{c.strip()}" for c in _REVIEW_COLS.split(","))
    rows = conn.fetchall(f"SELECT {cols}, p.sector FROM proposal_reviews r JOIN proposals p ON p.id = r.proposal_id "
                         "WHERE p.sector=? AND r.reviewed_us IS NULL AND r.alerted_us IS NULL AND r.due_us<? "
                         "ORDER BY r.due_us", (sector, now_us))
    return [(Review(*r[:10]), str(r[10])) for r in rows]


def mark_alerted(conn: Connection, proposal_id: str, now_us: int) -> bool:
    return conn.execute("UPDATE proposal_reviews SET alerted_us=? WHERE proposal_id=? AND alerted_us IS NULL",
                        (now_us, proposal_id)) == 1


def insert_validation(conn: Connection, validation_id: str, proposal_id: str, snapshot_id: str, outcome: str,
                      report: dict[str, Any], receipt_id: str, now_us: int) -> None:
    conn.execute(
        "INSERT INTO validations (id, proposal_id, snapshot_id, outcome, report, receipt_id, created_us) "
        "VALUES (?,?,?,?,?,?,?)",
        (validation_id, proposal_id, snapshot_id, outcome, orjson.dumps(report).decode(), receipt_id, now_us))


def validations_of(conn: Connection, proposal_id: str) -> list[dict[str, Any]]:
    rows = conn.fetchall("SELECT id, snapshot_id, outcome, report, receipt_id, created_us FROM validations "
                         "WHERE proposal_id=? ORDER BY created_us", (proposal_id,))
    return [{"id": r[0], "snapshot_id": r[1], "outcome": r[2], "report": orjson.loads(r[3]), "receipt_id": r[4],
             "created_us": int(r[5])} for r in rows]


def insert_approval(conn: Connection, approval_id: str, proposal_id: str, subject: str, roles: Sequence[str],
                    sector_attr: str | None, decision: str, comment: str | None, at_us: int) -> bool:
    """Insert an approval unless this subject already decided on the proposal; True when inserted."""
    return conn.execute(
        "INSERT INTO approvals (id, proposal_id, subject, roles, sector_attr, decision, comment, at_us) "
        "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (proposal_id, subject) DO NOTHING",
        (approval_id, proposal_id, subject, orjson.dumps(sorted(roles)).decode(), sector_attr, decision, comment,
         at_us)) == 1


def approvals_of(conn: Connection, proposal_id: str) -> list[dict[str, Any]]:
    rows = conn.fetchall("SELECT id, subject, roles, sector_attr, decision, comment, at_us FROM approvals "
                         "WHERE proposal_id=? ORDER BY at_us", (proposal_id,))
    return [{"id": r[0], "subject": r[1], "roles": orjson.loads(r[2]), "sector": r[3], "decision": r[4],
             "comment": r[5], "at_us": int(r[6])} for r in rows]


def open_authored_by(conn: Connection, author: str, open_statuses: Sequence[str]) -> list[tuple[Proposal, str]]:
    """The proposals of ``author`` in one of ``open_statuses``, with their status."""
    cols = ", ".join(f"p.{c.strip()}" for c in _PROPOSAL_COLS.split(","))
    rows = conn.fetchall(
        f"SELECT {cols}, s.status FROM proposals p JOIN proposal_status s ON s.proposal_id = p.id "
        f"WHERE p.author=? AND s.status IN ({','.join('?' * len(open_statuses))}) ORDER BY p.created_us",
        (author, *open_statuses))
    return [(_proposal(r[:11]), str(r[11])) for r in rows]


def open_votes_of(conn: Connection, subject: str, open_statuses: Sequence[str]) -> list[tuple[str, str, str]]:
    """(approval id, proposal id, sector) of ``subject``'s votes on proposals in one of ``open_statuses``."""
    rows = conn.fetchall(
        "SELECT a.id, a.proposal_id, p.sector FROM approvals a JOIN proposals p ON p.id = a.proposal_id "
        "JOIN proposal_status s ON s.proposal_id = a.proposal_id "
        f"WHERE a.subject=? AND s.status IN ({','.join('?' * len(open_statuses))}) ORDER BY a.at_us",
        (subject, *open_statuses))
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def promoted_cost_since(conn: Connection, sector: str, since_us: int) -> int:
    row = conn.fetchone(
        "SELECT COALESCE(SUM(p.cost), 0) FROM proposals p JOIN proposal_status s ON s.proposal_id = p.id "
        "WHERE p.sector=? AND s.status='promoted' AND s.updated_us>=?", (sector, since_us))
    return int(row[0]) if row else 0


def insert_cycle(conn: Connection, record: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO cycles (id, sector, started_us, finished_us, outcome, counts, receipt_ids, error) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (record["id"], record["sector"], record["started_us"], record["finished_us"], record["outcome"],
         orjson.dumps(record["counts"]).decode(), orjson.dumps(record["receipt_ids"]).decode(), record.get("error")))


def _cycle(r: Sequence[Any]) -> dict[str, Any]:
    return {"id": r[0], "sector": r[1], "started_us": int(r[2]), "finished_us": int(r[3]), "outcome": r[4],
            "counts": orjson.loads(r[5]), "receipt_ids": orjson.loads(r[6]), "error": r[7]}


def get_cycle(conn: Connection, cycle_id: str) -> dict[str, Any] | None:
    row = conn.fetchone("SELECT id, sector, started_us, finished_us, outcome, counts, receipt_ids, error FROM cycles "
                        "WHERE id=?", (cycle_id,))
    return None if row is None else _cycle(row)


def list_cycles(conn: Connection, sector: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    cols = "id, sector, started_us, finished_us, outcome, counts, receipt_ids, error"
    if sector is None:
        rows = conn.fetchall(f"SELECT {cols} FROM cycles ORDER BY started_us DESC LIMIT ?", (limit,))
    else:
        rows = conn.fetchall(f"SELECT {cols} FROM cycles WHERE sector=? ORDER BY started_us DESC LIMIT ?",
                             (sector, limit))
    return [_cycle(r) for r in rows]


def count_approvals_by(conn: Connection, subject: str) -> int:
    """How many approvals a subject (pseudonym) gave or refused."""
    row = conn.fetchone("SELECT COUNT(*) FROM approvals WHERE subject=?", (subject,))
    return int(row[0]) if row else 0


# -- leases: named, expiring, one holder at a time across every process and replica -------------------
# ``acquire`` is a single conditional upsert, so two contenders can never both win: the row is taken only
# when it is free, expired, or already held by the same holder (a renewal).
@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_us: int


def acquire_lease(conn: Connection, name: str, holder: str, now_us: int, ttl_us: int) -> bool:
    return conn.execute(
        "INSERT INTO leases (name, holder, expires_us, acquired_us) VALUES (?,?,?,?) "
        "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, expires_us=excluded.expires_us, "
        "acquired_us=excluded.acquired_us WHERE leases.expires_us <= ? OR leases.holder = excluded.holder",
        (name, holder, now_us + ttl_us, now_us, now_us)) == 1


def release_lease(conn: Connection, name: str, holder: str) -> None:
    conn.execute("UPDATE leases SET expires_us=0 WHERE name=? AND holder=?", (name, holder))


def get_lease(conn: Connection, name: str) -> Lease | None:
    row = conn.fetchone("SELECT name, holder, expires_us FROM leases WHERE name=?", (name,))
    return None if row is None else Lease(str(row[0]), str(row[1]), int(row[2]))
