"""Retention of observations as operations (SPEC §11; ``knhk archive run|list|verify``; docs/disaster-recovery.md).

``archive_observations`` archives and drops every month of observations older than the retention
(:mod:`knhk.observations.retention`), audited; it is a local operation (it writes the archive directory on the
host and, on PostgreSQL, drops partitions as the schema owner). ``verify_archive`` needs no installation: an
archive proves itself against the signed checkpoint in its proof bundle, years later; with an installation open
(:meth:`RetentionOps.archived_in_ledger`) the receipt is also looked up in its ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knhk.app.access import ARCHIVE_OBSERVATIONS, READ_RECEIPTS
from knhk.app.base import Operations
from knhk.errors import NotFoundError
from knhk.identity.rbac import Principal
from knhk.observations import retention
from knhk.observations.archive import SegmentReport, verify_segment
from knhk.observations.retention import Retention, RetentionReport


def verify_archive(file: Path) -> SegmentReport:
    """Verify an archived segment from its files alone (``knhk archive verify FILE``)."""
    return verify_segment(file)


class RetentionOps(Operations):
    def archive_observations(self, actor: Principal, *, retention_days: int | None = None, now_us: int | None = None,
                             dry_run: bool = False) -> RetentionReport:
        """Archive, record and drop every month of observations older than the retention (default
        ``KNHK_RETENTION_DAYS``) at ``now_us`` (default: now)."""
        self._allow(actor, ARCHIVE_OBSERVATIONS)
        rt = self.runtime
        days = retention_days if retention_days is not None else rt.settings.retention_days
        now = now_us if now_us is not None else rt.clock.now_us()
        report = Retention(rt.db, rt.ledger, rt.keyring, rt.settings.resolved_archive_dir).run(now, days,
                                                                                               dry_run=dry_run)
        if not dry_run:
            rt.audit.record(actor.identity, "observations.archive", "observations", "success",
                            metadata={"retention_days": days, "now_us": now,
                                      "segments": [a.segment for a in report.archived],
                                      "observations": sum(a.count for a in report.archived)})
        return report

    def archived_segments(self, actor: Principal) -> list[dict[str, Any]]:
        """The archived (and dropped) segments, oldest first."""
        self._allow(actor, READ_RECEIPTS)
        with self.runtime.db.connection() as conn:
            return retention.segments(conn)

    def archived_in_ledger(self, actor: Principal, report: SegmentReport) -> str:
        """Check that the receipt an archive's proof bundle proves is the entry of this installation's ledger
        (same log, seq and id); the message says so, or raises."""
        self._allow(actor, READ_RECEIPTS)
        if report.ledger is None:
            raise NotFoundError("the archive's proof bundle did not verify; there is no entry to look up")
        entry = self.runtime.ledger.entry(report.ledger["log"], int(report.ledger["seq"]))
        if entry.id != report.ledger["id"]:
            report.problems.append(f"the live ledger's entry {entry.seq} of {entry.log} is {entry.id}, not the "
                                   f"archive's receipt {report.ledger['id']}")
            return "the archive's receipt is not in this installation's ledger"
        report.checked.append(f"entry {entry.seq} of this installation's {entry.log} log is the archive's receipt")
        return "receipt found in the live ledger"
