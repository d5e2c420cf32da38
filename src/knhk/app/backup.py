"""Backups and restores (SPEC §11, §13 ``knhk backup``; docs/disaster-recovery.md) as operations.

Two groups, because a restore cannot need the installation it replaces:

- :class:`BackupOps` (a part of :class:`~knhk.app.application.Application`): ``create_backup`` — a backup of
  the running installation, vouched for by a ``backup.created`` entry in its own signed audit log;
- :class:`Recovery` — the operations that run with no installation open (like ``knhk db migrate``): listing and
  verifying backups (the live system is only a trust anchor, and may be gone) and restoring one, which ends
  with a ``backup.restored`` entry in the restored store's audit log.

All four are local operations (``access.py``): they act on the host — the backup directory, the data directory,
pgBackRest as the cluster's OS user — and a restore replaces the store under any running service, so none has
an API route and role-based access refuses them. The backup machinery (pgBackRest, pg_dump, manifests) is
imported when an operation runs, not with the application.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from knhk.app.access import CREATE_BACKUP, LIST_BACKUPS, RESTORE_BACKUP, VERIFY_BACKUP, Access, Operation
from knhk.app.base import Operations
from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.errors import DependencyUnavailableError
from knhk.identity.rbac import Principal
from knhk.ledger import receipts

if TYPE_CHECKING:
    from knhk.backup.manifest import Manifest
    from knhk.backup.service import RestoreReport
    from knhk.backup.verifier import Verification


class BackupOps(Operations):
    def create_backup(self, actor: Principal, *, logical: bool = False, backup_type: str = "incr") -> Manifest:
        """Back up the running installation online (SQLite online backup; PostgreSQL pgBackRest, or pg_dump with
        ``logical``) and record ``backup.created`` with the manifest's digest; a backup whose record cannot be
        written is removed again."""
        from knhk.backup.service import Backups

        self._allow(actor, CREATE_BACKUP)
        rt = self.runtime

        def record(manifest: Manifest) -> None:
            rt.audit.record(actor.identity, receipts.BACKUP_CREATED, f"backup/{manifest.id}", "success",
                            metadata={"manifest_sha256": manifest.digest(), "kind": manifest.kind,
                                      **{f"{log}_tree_size": state.tree_size
                                         for log, state in manifest.state.logs.items()}})

        return Backups(rt.settings).create(rt.ledger, rt.clock, record, logical=logical, backup_type=backup_type)


class Recovery:
    """The backup operations of an installation that need it neither open nor running."""

    def __init__(self, settings: Settings, access: Access) -> None:
        from knhk.backup.service import Backups

        self.settings = settings
        self.access = access
        self.backups = Backups(settings)

    def _allow(self, actor: Principal, operation: Operation) -> None:
        # no store is open to audit a denial in; the access policy's refusal is the answer
        self.access.authorize(actor, operation)

    def list_backups(self, actor: Principal) -> list[dict[str, Any]]:
        """The backups in the backup directory, newest first (an unreadable one with its error)."""
        self._allow(actor, LIST_BACKUPS)
        return self.backups.list()

    def verify_backup(self, actor: Principal, ref: str, *, use_live: bool = True,
                      workers: int | None = None) -> Verification:
        """Restore into scratch, count rows, verify every log and prove it consistent with the manifest's and
        (``use_live``) the running system's checkpoints; never writes to the running system."""
        self._allow(actor, VERIFY_BACKUP)
        return self.backups.verify(ref, use_live=use_live, workers=workers)

    def restore_backup(self, actor: Principal, ref: str | None, *, force: bool = False,
                       target_time: str | None = None, use_live: bool = True,
                       workers: int | None = None) -> RestoreReport:
        """Restore beside the live store, verify, swap it in, then record ``backup.restored`` in the restored
        store's audit log (opening it also applies any newer migrations)."""
        self._allow(actor, RESTORE_BACKUP)
        started = time.monotonic()
        report = self.backups.restore(ref, force=force, target_time=target_time, use_live=use_live,
                                      workers=workers)
        small = self.settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 2})
        try:
            with Runtime.open(small, subscribe_engine=False) as rt:
                rt.audit.record(actor.identity, receipts.BACKUP_RESTORED, f"backup/{report.backup}", "success",
                                metadata={"manifest_sha256": report.manifest_sha256,
                                          "target_time": report.target_time or "",
                                          "previous_kept_as": report.kept_previous or ""})
        except Exception as exc:
            raise DependencyUnavailableError(f"backup {report.backup} was restored and verified, but recording the "
                                             f"restore in its audit log failed: {exc}") from exc
        report.duration_s = time.monotonic() - started
        return report
