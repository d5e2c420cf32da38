"""Committing a cycle's receipts to their evidence (SPEC §8, :mod:`knhk.proof.evidence`).

A pattern rests on every observation of its window (its ``population``), not only on the sample its
``pattern.detected`` / ``alert.raised`` receipts list: each receipt carries the commitment (count, Merkle root
over id + content hash, truncation flag), and a truncated one's full member list is stored as an evidence set
before the receipt is appended, so ``knhk receipts evidence SEQ`` can find and recompute it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from knhk.detection.pattern import Pattern
from knhk.ledger import store as ledger_store
from knhk.observations import store as observation_store
from knhk.proof.evidence import Commitment, commit, encode_members, item
from knhk.storage.database import Database


def pattern_commitment(pattern: Pattern) -> Commitment:
    """The commitment to everything a pattern rests on; its sample is the most recent of the pattern's ids."""
    return commit([(e[2], e[4], e[3]) for e in pattern.population], sample_from=pattern.evidence)


def commitments(db: Database, patterns: Sequence[Pattern]) -> dict[str, Commitment]:
    """Pattern name → its commitment. A pattern that names evidence but carries no population (one built
    outside the built-in detectors) commits to the stored observations its ids name; ids that name no stored
    observation are kept in the sample but cannot be committed to, and say so by the count."""
    out: dict[str, Commitment] = {}
    for p in patterns:
        if p.population or not p.evidence:
            out[p.name] = pattern_commitment(p)
            continue
        with db.connection() as conn:
            stored = observation_store.find_by_ids(conn, list(p.evidence))
        out[p.name] = commit((item(o.id, o.content_hash, o.seq) for i in p.evidence
                              if (o := stored.get(i)) is not None), sample_from=p.evidence)
    return out


def store_sets(db: Database, sector: str, commitments: Iterable[Commitment], now_us: int) -> None:
    """Store the member list of every truncated commitment (idempotent: sets are keyed by their root)."""
    due = [c for c in commitments if c.truncated]
    if not due:
        return
    with db.transaction() as conn:
        for c in due:
            encoding, blob = encode_members(c.members)
            ledger_store.put_evidence_set(conn, c.root, sector, c.count, encoding, blob, now_us)
