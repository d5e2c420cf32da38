"""Operations on observations and patterns (SPEC §2, §3, §10 ``/observations``, ``/patterns``; §13 ``knhk ingest``).

Ingest (one, or an atomic batch), check a batch without storing it, read (healthcare reads need a
justification, and each is audited), run the detectors now, list the patterns the loop recorded. Ingestion is
audited aggregated per acting principal, sector and minute (SPEC §9): each ingest owes its count in the ledger's
outbox, in the transaction that stores the observations (:mod:`knhk.observations.ingest`), so a crash loses no
count; the sequencer writes one ``observations.ingested`` entry per principal, sector and minute once the minute
has ended, and :class:`IngestAudit` drains them on demand (the service's minute job; at close, this process's
counts of the current minute too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from knhk.app.access import CHECK_OBSERVATIONS, DETECT, INGEST, READ_OBSERVATIONS, READ_PATTERNS
from knhk.app.base import Operations
from knhk.detection.pattern import DetectionResult
from knhk.errors import UsageError
from knhk.identity.rbac import Principal
from knhk.ledger import receipts
from knhk.ledger.ledger import Ledger
from knhk.observations.admission import Label, observation_label
from knhk.observations.ingest import IngestResult
from knhk.observations.model import Observation
from knhk.observations.reader import ObservationPage
from knhk.ops.clock import format_rfc3339
from knhk.proof.entry import Entry


class IngestAudit:
    """Writes the ``observations.ingested`` audit entries owed in the outbox: those of ended minutes, and at
    shutdown this process's current ones too."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def flush(self, *, everything: bool = False) -> int:
        """Drain the due outbox rows (``everything``: and this process's counts of the current minute); return
        how many entries were written."""
        return self.ledger.flush_outbox(own=everything)


class ObservationOps(Operations):
    ingest_audit: IngestAudit

    # -- ingest ---------------------------------------------------------------------------------------------
    def ingest(self, actor: Principal, raw: Any) -> IngestResult:
        """Ingest one observation; the identical one sent again is returned as a duplicate."""
        self._allow(actor, INGEST)
        return self.runtime.ingestor.ingest(raw, client=self._pseudonym(actor), audit=True)

    def ingest_batch(self, actor: Principal, raws: Sequence[Any], *, label: Label = observation_label,
                     backfill: bool = False) -> list[IngestResult]:
        """Ingest up to 10,000 observations in one transaction: all are stored or none. ``label`` names an item
        in a refusal (``observation 3``; the CLI names lines of its file). ``backfill``: recorded data, kept
        with its original (past) timestamps however old; every such batch is audited
        (``observations.backfilled``, with its count and time range)."""
        self._allow(actor, INGEST)
        results = self.runtime.ingestor.ingest_batch(raws, client=self._pseudonym(actor), label=label,
                                                     backfill=backfill, audit=True)
        stored = [r.observation for r in results if not r.duplicate]
        if backfill and stored:
            self.runtime.audit.record(
                actor.identity, "observations.backfilled", "observations", "success",
                metadata={"stored": str(len(stored)), "sectors": ",".join(sorted({o.sector for o in stored})),
                          "earliest": format_rfc3339(min(o.ts_us for o in stored)),
                          "latest": format_rfc3339(max(o.ts_us for o in stored))})
        return results

    def check_observations(self, actor: Principal, raws: Sequence[Any], *, label: Label = observation_label,
                           backfill: bool = False) -> None:
        """Refuse, storing nothing, what ingest would refuse for any of ``raws`` (any number of them)."""
        self._allow(actor, CHECK_OBSERVATIONS)
        self.runtime.ingestor.check_batch(raws, client=self._pseudonym(actor), label=label, backfill=backfill)

    # -- reading --------------------------------------------------------------------------------------------
    def _justify(self, actor: Principal, sector: str | None, justification: str | None, what: str) -> None:
        if sector is None or sector not in self.runtime.settings.phi_sectors:
            return
        if not justification or not justification.strip():
            raise UsageError(f"reading {sector} observations needs an X-Access-Justification header")
        self.runtime.audit.record(actor.identity, "phi.read", what, "success", reason=justification[:1000],
                                  sector=sector)

    def observations(self, actor: Principal, *, sector: str | None = None, event_type: str | None = None,
                     since_us: int | None = None, until_us: int | None = None, after: int = 0, limit: int = 100,
                     justification: str | None = None) -> ObservationPage:
        """Observations in ingest order after the cursor ``after`` (protected sectors: justified and audited)."""
        self._allow(actor, READ_OBSERVATIONS)
        if sector is None and any(True for _ in self.runtime.settings.phi_sectors):
            raise UsageError("name a sector: reads across sectors could include protected health information")
        self._justify(actor, sector, justification, f"observations?sector={sector}")
        return self.runtime.reader.query(sector=sector, event_type=event_type, since_us=since_us, until_us=until_us,
                                         after=after, limit=limit)

    def observation(self, actor: Principal, observation_id: str, *, justification: str | None = None) -> Observation:
        self._allow(actor, READ_OBSERVATIONS)
        obs = self.runtime.reader.get(observation_id)
        self._justify(actor, obs.sector, justification, f"observation/{observation_id}")
        return obs

    # -- patterns -------------------------------------------------------------------------------------------
    def detect(self, actor: Principal, sector: str) -> DetectionResult:
        """Run every detector on a sector now. Nothing is recorded: cycles record the patterns they act on."""
        self._allow(actor, DETECT)
        self._installed(sector)
        rt = self.runtime
        rt.catch_up(sector)
        return rt.engine.detect(sector, rt.registry.current_schema(sector), rt.loop_clock.now_us(),
                                thresholds=rt.thresholds.thresholds(sector))

    def patterns(self, actor: Principal, *, sector: str | None = None, before_seq: int = 2**62,
                 limit: int = 100) -> list[Entry]:
        """The ``pattern.detected`` receipts, newest first, before the cursor ``before_seq``."""
        self._allow(actor, READ_PATTERNS)
        return self.runtime.ledger.entries(receipts.RECEIPTS, kind=receipts.PATTERN_DETECTED, sector=sector,
                                           descending=True, before_seq=before_seq, limit=limit)
