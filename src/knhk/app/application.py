"""The application: one object per process that every face (CLI, HTTP service, console) talks to.

An :class:`Application` holds the wiring (:class:`~knhk.app.runtime.Runtime`) and an access policy
(:mod:`knhk.app.access`). Its methods are the operations of SPEC §10 and §13, one each, grouped by concept in the
modules of this package (observations, proposals, snapshots, sectors, cycles, ledger, audit, backup, system);
each takes the acting principal first and applies authorization, audit and validation itself, so a rule is
written once for every face. Faces translate their input into a call and the result into their output, nothing
more.
"""

from __future__ import annotations

import logging

from knhk.app.access import Access
from knhk.app.audit import AuditOps
from knhk.app.auth_audit import AuthFailureAudit
from knhk.app.backup import BackupOps
from knhk.app.cycles import CycleOps
from knhk.app.guards import GuardOps
from knhk.app.ledger import LedgerOps
from knhk.app.observations import IngestAudit, ObservationOps
from knhk.app.proposals import ProposalOps
from knhk.app.retention import RetentionOps
from knhk.app.runtime import Runtime
from knhk.app.sectors import SectorOps
from knhk.app.snapshots import SnapshotOps
from knhk.app.system import SystemOps
from knhk.config import Settings
from knhk.errors import KnhkError
from knhk.ops.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("knhk")


class Application(ObservationOps, ProposalOps, SnapshotOps, SectorOps, GuardOps, CycleOps, LedgerOps, AuditOps,
                  BackupOps, RetentionOps, SystemOps):
    """The operations of one KNHK installation, for the principals of one face."""

    def __init__(self, runtime: Runtime, access: Access) -> None:
        self.runtime = runtime
        self.access = access
        self.ingest_audit = IngestAudit(runtime.ledger)
        self.auth_audit = AuthFailureAudit(runtime.audit, runtime.clock)

    @classmethod
    def open(cls, settings: Settings, *, access: Access, clock: Clock = SYSTEM_CLOCK, loop_clock: Clock | None = None,
             migrate: bool = True, install_packs: bool = True, subscribe_engine: bool = True) -> Application:
        """Open (and on first use initialise) an installation; see :meth:`Runtime.open`."""
        return cls(Runtime.open(settings, clock=clock, loop_clock=loop_clock, migrate=migrate,
                                install_packs=install_packs, subscribe_engine=subscribe_engine), access)

    def close(self) -> None:
        """Audit the ingestion counted so far, then close the installation."""
        try:
            self.ingest_audit.flush(everything=True)
            self.auth_audit.flush(everything=True)
        except KnhkError as exc:
            log.error("the aggregated audit of this process could not be written: %s", exc)
        self.runtime.close()

    def __enter__(self) -> Application:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def initialise(settings: Settings) -> None:
    """Initialise an installation (migrations, first key, sector packs) and close it again (``knhk serve`` does
    this once before its workers start, so they never race on first use)."""
    Runtime.open(settings).close()
