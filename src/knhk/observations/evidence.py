"""Recomputing a receipt's evidence commitment from the store (``knhk receipts evidence SEQ``, SPEC §8).

For one receipt: first the receipt itself is proven (its offline proof bundle: id, signature, inclusion in a
signed checkpoint). Then its members are found — the listed ids when the evidence is complete, the stored
evidence set of its root when it is a truncated sample — and read back from the observation store. Each
observation's content hash is recomputed from its stored content (:func:`knhk.observations.model.content_hash`),
and the Merkle root over (id, recomputed hash) must equal the committed ``evidence_root``
(:mod:`knhk.proof.evidence`). A member that retention archived (its month dropped after the archive's ledger
entry, :mod:`knhk.observations.retention`) is reported as archived in its segment, not as missing: its content
hash is read from the segment's archive (in ``archive_dir``, once the file is shown to be the one its
``observations.archived`` receipt records) and the whole root recomputed; without the archive the check passes for
the members still stored and names the segments to prove with ``knhk archive verify``. The report
names the first problem: a member missing from the store, a sample id
that is no member, an observation whose stored row no longer matches its own content hash (an edited row), or —
when every row is self-consistent yet the root differs (content and stored hash both rewritten) — the root.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knhk.errors import KnhkError
from knhk.ledger import store as ledger_store
from knhk.ledger.ledger import Ledger
from knhk.observations import retention, store
from knhk.observations.model import Observation, content_hash
from knhk.proof.bundle import verify_bundle
from knhk.proof.entry import Entry
from knhk.proof.evidence import SCHEME, decode_members, evidence_root
from knhk.storage.database import Database

#: receipt kinds whose evidence is observation ids (and so must carry a commitment)
OBSERVATION_EVIDENCE = frozenset({"pattern.detected", "alert.raised", "guard.violated"})


@dataclass
class EvidenceReport:
    """What recomputing one receipt's evidence commitment found."""

    log: str
    seq: int
    kind: str
    ok: bool = True
    committed: bool = False
    count: int | None = None
    truncated: bool | None = None
    root: str | None = None
    recomputed_root: str | None = None
    checked: int = 0
    archived: dict[str, int] | None = None  # segment → how many members retention archived there
    first_mismatch: dict[str, Any] | None = None
    message: str = ""

    def fail(self, message: str, **mismatch: Any) -> EvidenceReport:
        self.ok = False
        self.message = message
        self.first_mismatch = {"problem": message, **mismatch}
        return self

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log, "seq": self.seq, "kind": self.kind, "ok": self.ok, "committed": self.committed,
                "evidence_count": self.count, "evidence_truncated": self.truncated, "evidence_root": self.root,
                "recomputed_root": self.recomputed_root, "checked": self.checked, "archived": self.archived,
                "first_mismatch": self.first_mismatch, "message": self.message}


def recomputed_hash(obs: Observation) -> str:
    """The content hash of a stored row, from its content (not from its stored ``content_hash`` column)."""
    return content_hash(obs.event_type, obs.sector, None if obs.ts_defaulted else obs.ts_us, obs.value,
                        obs.metadata)


def check_evidence(ledger: Ledger, db: Database, log: str, seq: int,
                   archive_dir: Path | None = None) -> EvidenceReport:
    """Recompute the evidence commitment of entry ``seq`` of ``log`` from the store (and, for members retention
    archived, from their archives in ``archive_dir`` when they are there)."""
    entry = ledger.entry(log, seq)
    report = EvidenceReport(log, seq, entry.kind)
    try:
        verify_bundle(ledger.prove(log, seq))
    except KnhkError as exc:
        return report.fail(f"receipt {seq} itself does not verify: {exc.message}")
    return _check(entry, db, report, ledger, archive_dir)


def _check(entry: Entry, db: Database, report: EvidenceReport, ledger: Ledger,
           archive_dir: Path | None) -> EvidenceReport:
    data = entry.data
    listed = [str(x) for x in entry.evidence]
    if "evidence_root" not in data:
        if entry.kind in OBSERVATION_EVIDENCE and listed:
            return report.fail(f"receipt {report.seq} ({entry.kind}) lists observations but commits to no digest "
                               "of them")
        report.message = f"receipt {report.seq} ({entry.kind}) carries no observation evidence to recompute"
        return report
    report.committed = True
    count, truncated, root = data.get("evidence_count"), data.get("evidence_truncated"), data.get("evidence_root")
    report.count = count if isinstance(count, int) else None
    report.truncated = truncated if isinstance(truncated, bool) else None
    report.root = root if isinstance(root, str) else None
    if data.get("evidence_scheme") != SCHEME or report.count is None or report.truncated is None or not report.root:
        return report.fail(f"receipt {report.seq} has a malformed evidence commitment (scheme "
                           f"{data.get('evidence_scheme')!r})")
    if report.truncated != (report.count > len(listed)) or len(set(listed)) != len(listed):
        return report.fail(f"receipt {report.seq} lists {len(listed)} ids but says evidence_count "
                           f"{report.count}, evidence_truncated {str(report.truncated).lower()}")
    with db.connection() as conn:
        if not report.truncated:
            found = store.find_by_ids(conn, listed)
            members = [(i, found.get(i)) for i in listed]
        else:
            stored = ledger_store.get_evidence_set(conn, report.root)
            if stored is None:
                return report.fail(f"the evidence set of root {report.root} is not in the store")
            what, located = decode_members(stored.encoding, stored.members)
            if len(located) != report.count or stored.count != report.count:
                return report.fail(f"the stored evidence set holds {len(located)} members, the receipt commits to "
                                   f"{report.count}")
            if what == "seqs":
                by_seq = store.find_by_seqs(conn, [int(s) for s in located])
                members = [(f"seq {s}", by_seq.get(int(s))) for s in located]
            else:
                by_id = store.find_by_ids(conn, [str(i) for i in located])
                members = [(str(i), by_id.get(str(i))) for i in located]
        absent = [name for name, obs in members if obs is None]
        stored_ids = {obs.id for _, obs in members if obs is not None}
        absent_ids = sorted({n for n in absent if not n.startswith("seq ")} | (set(listed) - stored_ids))
        archived = retention.archived_in(conn, absent_ids, [int(n[4:]) for n in absent if n.startswith("seq ")]
                                         ) if absent else {}
        known = {str(s["segment"]): s for s in retention.segments(conn)} if archived else {}
    for name, obs in members:
        if obs is None and name not in archived:
            return report.fail(f"observation {name} of the evidence is missing from the store",
                               observation=name)
    present = {obs.id: obs for _, obs in members if obs is not None}
    for obs_id in listed:
        if obs_id not in present and obs_id not in archived:
            return report.fail(f"sample id {obs_id} is not one of the committed observations", observation_id=obs_id)
    pairs = []
    for obs_id in sorted(present):
        obs = present[obs_id]
        recomputed = recomputed_hash(obs)
        if recomputed != obs.content_hash:
            return report.fail(f"observation {obs_id} (seq {obs.seq}) was changed after it was stored: its content "
                               f"hashes to {recomputed}, not {obs.content_hash}", observation_id=obs_id,
                               seq=obs.seq)
        pairs.append((obs_id, recomputed))
    report.checked = len(pairs)
    if archived:
        report.archived = dict(Counter(archived.values()))
        where = ", ".join(f"{n} in segment {seg}" for seg, n in sorted(report.archived.items()))
        from_archives = _from_archives(ledger, archive_dir, known, archived)
        if from_archives is None:
            report.message = (f"receipt {report.seq} ({entry.kind}): {len(archived)} of its {report.count} "
                              f"observation(s) were archived after the retention ({where}; prove them with `knhk "
                              f"archive verify`), the other {len(pairs)} are in the store and unchanged; the root is "
                              "not recomputed (the archives are not in the archive directory)")
            return report
        every = {**dict(from_archives), **dict(pairs)}
        report.checked = len(every)
        report.recomputed_root = evidence_root(every.items())
        if report.recomputed_root != report.root or len(every) != report.count:
            return report.fail(f"the {len(every)} observations ({len(pairs)} stored, the others read from their "
                               f"archives: {where}) do not hash to the committed root {report.root} (recomputed "
                               f"{report.recomputed_root})", recomputed_root=report.recomputed_root)
        report.message = (f"receipt {report.seq} ({entry.kind}): all {report.count} observation(s) of its evidence "
                          f"hash to its root {report.root}; {len(every) - len(pairs)} were read from the archives of "
                          f"the retention ({where}; each archive is the one its observations.archived receipt "
                          "records)")
        return report
    report.recomputed_root = evidence_root(pairs)
    if report.recomputed_root != report.root:
        return report.fail(f"the {len(pairs)} observations no longer hash to the committed root {report.root} "
                           f"(recomputed {report.recomputed_root}): observations were rewritten together with "
                           "their stored hashes, or replaced", recomputed_root=report.recomputed_root)
    report.message = (f"receipt {report.seq} ({entry.kind}): all {report.count} observation(s) of its evidence are "
                      f"in the store and hash to its root {report.root}")
    return report


def _from_archives(ledger: Ledger, archive_dir: Path | None, known: dict[str, dict[str, Any]],
                   archived: dict[str, str]) -> list[tuple[str, str]] | None:
    """(id, content hash) of every archived member, read from its segment's archive; None if any is not at hand."""
    if archive_dir is None:
        return None
    out: list[tuple[str, str]] = []
    for segment in sorted(set(archived.values())):
        wanted = {name for name, seg in archived.items() if seg == segment}
        got = retention.archived_hashes(ledger, archive_dir, known[segment], wanted)
        if got is None or set(got) != wanted:
            return None
        out.extend(got.values())
    return out


def check_all_evidence(ledger: Ledger, db: Database, log: str = "receipts", page: int = 1000,
                       archive_dir: Path | None = None) -> tuple[int, EvidenceReport | None]:
    """Recompute the evidence commitment of every receipt with observation evidence (after the chain itself
    has been verified); (how many were checked, the first failing report or None)."""
    checked = 0
    after = -1
    while True:
        entries = ledger.entries(log, after_seq=after, limit=page)
        if not entries:
            return checked, None
        for entry in entries:
            if entry.kind in OBSERVATION_EVIDENCE:
                report = _check(entry, db, EvidenceReport(log, entry.seq, entry.kind), ledger, archive_dir)
                checked += 1
                if not report.ok:
                    return checked, report
        after = entries[-1].seq
