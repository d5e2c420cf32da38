"""The ledger's transactional outbox: entries owed by a change, committed with the change (SPEC §8 "Writes").

A concept that must record a change and its receipts together (ingest: the observations and their
``guard.violated`` / ``alert.raised`` receipts, and the per-minute ``observations.ingested`` audit counts) stages
the entry drafts with :func:`stage` / :func:`stage_count` in its own transaction. Once that commits, the receipts
are owed and cannot be lost: the sequencer, the one ledger writer, drains due rows (:func:`drafts_for`) in the
transaction that seals their entries, and marks each row with its entry's seq there, so a row becomes exactly
one entry across crashes, retries and replicas (the drain runs under the ledger lock). Counted rows with an
equal draft (the same principal, sector and minute) become one audit entry whose ``metadata.count`` is their sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from knhk.ledger import store as sql
from knhk.proof.canonical import canonical_bytes
from knhk.proof.entry import EntryDraft
from knhk.storage.database import Connection


def encode(draft: EntryDraft) -> str:
    """A draft as canonical JSON text (what the outbox stores)."""
    return canonical_bytes({"log": draft.log, "kind": draft.kind, "sector": draft.sector, "subject": draft.subject,
                            "outcome": draft.outcome, "reason": draft.reason, "evidence": list(draft.evidence),
                            "data": dict(draft.data)}).decode()


def decode(text: str, count: int | None = None) -> EntryDraft:
    """The stored draft (checked again as any draft is); a count adds ``metadata.count`` to its data."""
    raw = orjson.loads(text)
    data = raw["data"]
    if count is not None:
        data = {**data, "metadata": {**data.get("metadata", {}), "count": str(count)}}
    return EntryDraft(log=raw["log"], kind=raw["kind"], sector=raw["sector"], subject=raw["subject"],
                      outcome=raw["outcome"], reason=raw["reason"], evidence=raw["evidence"], data=data)


def stage(conn: Connection, drafts: Sequence[EntryDraft], *, now_us: int, origin: str) -> list[int]:
    """Stage one entry per draft, due at once; the rows' ids in order."""
    return sql.stage_outbox(conn, [(d.log, encode(d), None, now_us, now_us, origin) for d in drafts])


def stage_count(conn: Connection, counts: Sequence[tuple[EntryDraft, int]], *, now_us: int, due_us: int,
                origin: str) -> list[int]:
    """Stage counts: each (audit draft, n) adds n to the entry of that draft drained after ``due_us``."""
    return sql.stage_outbox(conn, [(d.log, encode(d), n, due_us, now_us, origin) for d, n in counts])


def stage_with_counts(conn: Connection, drafts: Sequence[EntryDraft], counts: Sequence[tuple[EntryDraft, int]],
                      *, now_us: int, due_us: int, origin: str) -> list[int]:
    """:func:`stage` and :func:`stage_count` in one statement; the row ids of ``drafts`` (the first rows), in
    order."""
    ids = sql.stage_outbox(conn, [*((d.log, encode(d), None, now_us, now_us, origin) for d in drafts),
                                  *((d.log, encode(d), n, due_us, now_us, origin) for d, n in counts)])
    return ids[:len(drafts)]


@dataclass(frozen=True)
class Owed:
    """One entry the outbox owes: its draft and the rows it drains."""

    draft: EntryDraft
    rows: tuple[int, ...]


def drafts_for(rows: Sequence[sql.OutboxRow]) -> list[Owed]:
    """The entries ``rows`` become, in the order of each entry's first row: one per plain row, one per group of
    counted rows with the same draft."""
    owed: list[Owed] = []
    counted: dict[tuple[str, str], list[sql.OutboxRow]] = {}
    order: list[tuple[str, str] | int] = []
    for row in rows:
        if row.count is None:
            order.append(row.id)
            continue
        key = (row.log, row.draft)
        if key not in counted:
            counted[key] = []
            order.append(key)
        counted[key].append(row)
    plain = {row.id: row for row in rows if row.count is None}
    for item in order:
        if isinstance(item, int):
            owed.append(Owed(decode(plain[item].draft), (item,)))
        else:
            group = counted[item]
            owed.append(Owed(decode(item[1], sum(r.count or 0 for r in group)), tuple(r.id for r in group)))
    return owed
